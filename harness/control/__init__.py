"""Reaching a tor control port, turning its events into typed records, storing them.

One job per module:
``transport`` TCP / unix socket / any socket factory (the SSH tunnel's seam) ·
``auth`` SAFECOOKIE, cookie, password · ``session`` one connection: hand-off controller,
feature detection, subscriptions · ``events`` stem event classes incl. the patch's,
event → record · ``records`` the record types · ``buffer`` the bounded queue between
stem and the writer · ``writer`` parse + batched commits · ``store`` SQLite WAL,
append-only · ``collector`` the long-running loop (reconnects, snapshots, A/B switches)
· ``abtest`` arms, schedule, SETCONF and restore · ``stats`` / ``summary`` per-arm
statistics · ``export`` KIST runs → JSON lines for replay · ``replayport`` a recorded-line
control port for benchmarks and tests · ``bench`` the throughput benchmark.
"""
