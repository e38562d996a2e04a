"""How often KIST's socket limit actually bound: per relay and arm, from the recorded runs.

KIST's point is the per-socket limit (2·cwnd·mss − una·mss − notsent, minus the outbuf in
Tor's code). At loopback round trips the limit is so large that a socket almost never
reaches it, so the limit shapes nothing; on emulated Internet links it should. A run is
*limit-bound* when, for some channel, `socket_can_write` was false before a flush (a
`c:CHAN:0` step of the KIST_RUN record). Also the TCP_INFO reads of those runs (cwnd,
mss), which describe the path the relay's sockets saw.

    python -m harness.report.limitbound STORE.sqlite
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

_BLOCKED = re.compile(r"(?:^|,)c:\d+:0(?=,|$)")
_SOCK = re.compile(r"T/(\d+)/(\d+)/(\d+)/(\d+)")


@dataclass(frozen=True)
class LimitRow:
    relay: str          # fingerprint prefix
    arm: str
    runs: int           # KIST runs with at least one socket read
    bound: int          # of which limit-bound
    cwnd_median: float
    mss_median: float

    @property
    def share(self) -> float:
        return self.bound / self.runs if self.runs else 0.0


def _field(raw: str, name: str) -> str:
    m = re.search(rf"(?:^| ){name}=(\S*)", raw)
    return m.group(1) if m else ""


MAX_RUNS = 200_000   # a day's store has millions: the first this many KIST runs are read (said in the note)


def limit_bound(store: Path, max_runs: int = MAX_RUNS) -> list[LimitRow]:
    """One row per (relay, arm) with KIST runs, read from the store's raw KIST_RUN records."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT c.fingerprint, c.arm, r.raw FROM records r JOIN contexts c ON r.ctx = c.id "
                           "WHERE r.kind = 'KIST_RUN' AND r.raw LIKE '%SCHED=KIST %' ORDER BY r.id LIMIT ?",
                           (max_runs,))
        acc: dict[tuple[str, str], list[list[int]]] = {}
        for fp, arm, raw in rows:
            socks = _SOCK.findall(_field(raw, "SOCK"))
            if not socks:
                continue
            a = acc.setdefault((fp[:8], arm), [[0, 0], [], []])
            a[0][0] += 1
            a[0][1] += bool(_BLOCKED.search(_field(raw, "STEPS")))
            a[1].extend(int(s[0]) for s in socks)
            a[2].extend(int(s[2]) for s in socks)
    finally:
        con.close()
    return [LimitRow(fp, arm, v[0][0], v[0][1], statistics.median(v[1]), statistics.median(v[2]))
            for (fp, arm), v in sorted(acc.items())]


def note(store: Path) -> str | None:
    """The report's line: the share of limit-bound KIST runs per relay and arm (None: no KIST runs)."""
    try:
        rows = limit_bound(store)
    except sqlite3.Error:
        return None
    if not rows:
        return None
    parts = [f"{r.relay} {r.arm} {r.share:.1%} of {r.runs} (median cwnd {r.cwnd_median:g}, mss {r.mss_median:g})"
             for r in rows]
    capped = f" (the first {MAX_RUNS:,} KIST runs)" if sum(r.runs for r in rows) >= MAX_RUNS else ""
    return ("KIST runs in which a socket reached its limit (socket_can_write false before a flush), per relay "
            f"and arm{capped}: " + "; ".join(parts) + ". Near 0 % at loopback round trips; emulated links "
            "([links] in the scenario) make the limit bind.")


def render(rows: list[LimitRow]) -> str:
    head = "| relay | arm | KIST runs | limit-bound | share | median cwnd | median mss |\n|---|---|---|---|---|---|---|"
    body = [f"| {r.relay} | {r.arm} | {r.runs} | {r.bound} | {r.share:.1%} | {r.cwnd_median:g} | {r.mss_median:g} |"
            for r in rows]
    return "\n".join([head, *body])


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python -m harness.report.limitbound STORE.sqlite", file=sys.stderr)
        return 2
    print(render(limit_bound(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
