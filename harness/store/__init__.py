"""The seam: everything downstream of collection reads recorded runs from here.

``db`` SQLite in WAL mode, append-only, committed in batches (the ``Store``) ·
``records`` every record kind, once, the context and the record · ``typed`` the typed
records the harness writes itself (session, gap, a phase's plan and results, download) ·
``aggregates`` per-minute counters and histograms written with the records ·
``queries`` what the checks and the report read (runs, queue-time cells, phases,
downloads, the KIST interval) · ``export`` KIST runs → JSON lines for replay.
"""
