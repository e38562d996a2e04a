"""Where KIST's cells wait when the kernel is not the bottleneck: the outbuf its runs leave behind.

KIST moves cells from circuit queues (where the EWMA mux orders circuits) to a channel's
outbuf only up to the socket's limit, and then writes the outbuf to the kernel itself. The
limit is computed from the socket (cwnd, notsent) minus the outbuf, but the write also goes
through Tor's token buckets (BandwidthRate): when those are what bounds a relay, the write
takes less than the outbuf and the rest waits there, in arrival order, until Tor's main loop
writes it after the next refill. Cells waiting in the outbuf have left the mux: a small
download's cells queue behind a bulk circuit's. KIST_QTIME marks such a cell with an outbuf
time of ``-`` (no write of its run emptied it); this module counts them per relay and arm.

On loopback links with a 1 MiB/s token bucket, 75-91 % of the cells KIST runs flushed
were left in the outbuf; with the paper's latency on every link, 11-13 %.

    python -m harness.report.outbufleft STORE.sqlite
"""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_RECORDS = 200_000  # KIST_QTIME records read (a day's store has millions; said in the note)


@dataclass(frozen=True)
class OutbufRow:
    relay: str    # fingerprint prefix
    arm: str
    cells: int    # cells KIST runs moved to an outbuf
    left: int     # of which no write of the same run took out of the outbuf

    @property
    def share(self) -> float:
        return self.left / self.cells if self.cells else 0.0


def outbuf_left(store: Path, max_records: int = MAX_RECORDS) -> list[OutbufRow]:
    """One row per (relay, arm) with KIST runs that flushed cells, from the store's KIST_QTIME records."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    acc: dict[tuple[str, str], list[int]] = {}
    try:
        rows = con.execute("SELECT c.fingerprint, c.arm, r.data FROM records r JOIN contexts c ON r.ctx = c.id "
                           "WHERE r.kind = 'KIST_QTIME' ORDER BY r.id LIMIT ?", (max_records,))
        for fp, arm, data in rows:
            rec = json.loads(data)
            if rec.get("sched") != "KIST":
                continue   # Vanilla never writes the kernel inside its runs: every cell would count
            cells = [c for c in str(rec.get("cells", "")).split(",") if c]
            a = acc.setdefault((str(fp)[:8], str(arm)), [0, 0])
            a[0] += len(cells)
            a[1] += sum(c.endswith(":-") for c in cells)
    finally:
        con.close()
    return [OutbufRow(fp, arm, v[0], v[1]) for (fp, arm), v in sorted(acc.items()) if v[0]]


def note(store: Path) -> str | None:
    """The report's line (None: no KIST_QTIME records of KIST runs)."""
    try:
        rows = outbuf_left(store)
    except (sqlite3.Error, ValueError):
        return None
    if not rows:
        return None
    parts = [f"{r.relay} {r.arm} {r.share:.1%} of {r.cells:,}" for r in rows]
    return ("Cells KIST runs flushed that no write of the same run took out of the outbuf (the token bucket "
            "or the socket took less), per relay and arm: " + "; ".join(parts) + ". They wait there in arrival "
            "order, outside the EWMA mux (harness.report.outbufleft).")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for r in outbuf_left(Path(argv[0])):
        print(f"{r.relay} {r.arm}: {r.left:,} of {r.cells:,} cells left in the outbuf ({r.share:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
