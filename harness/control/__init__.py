"""Reaching a tor control port, subscribing to its events, collecting them into the store.

One job per module:
``transport`` TCP / unix socket / any socket factory (the SSH tunnel's seam) ·
``auth`` SAFECOOKIE, cookie, password · ``session`` one connection: hand-off controller,
feature detection, subscriptions · ``events`` stem event classes incl. the patch's,
event → record · ``buffer`` the bounded queue between stem and the writer · ``writer``
parse + batched commits into the store (harness.store) · ``collector`` the long-running
loop (reconnects, snapshots, A/B switches) · ``abtest`` arms, schedule, SETCONF and
restore · ``replayport`` a recorded-line control port for benchmarks and tests ·
``bench`` the collector's throughput benchmark (and, with ``--day``, the store's queries).
"""
