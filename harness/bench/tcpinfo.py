"""Benchmark: the syscall floor of KIST's per-socket cost on this machine.

    python -m harness.bench.tcpinfo [--sockets 1,10,100,1000] [--passes N]

KIST reads every write-pending socket once per scheduler run: ``getsockopt(TCP_INFO)``
and ``ioctl(SIOCOUTQNSD)`` (Tor's ``update_socket_info_impl()``). This times exactly
those two calls in a C loop (``tcpinfo_floor.c``, compiled here with the system ``cc``
at ``-O2``) over N connected loopback sockets that hold unsent data, and prints the
microseconds per socket: the floor the ``KIST_OVERHEAD`` figure (``SOCKNS / SOCKETS``)
can be held against. Two conditions per N:

- ``hot``: passes back to back, caches warm (a tight loop: the lowest it can be);
- ``cold``: 32 MiB of scratch memory written before each pass, so the pass starts with
  evicted caches, as a scheduler run does after Tor's main loop ran for milliseconds.

The clock is read twice per pass (not per socket), so its cost is spread over N sockets.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, InputError, StepError
from harness.proc import run

SOURCE = Path(__file__).with_name("tcpinfo_floor.c")
EVICT_BYTES = 32 << 20  # the L3 of this machine is 32 MiB (lscpu)
COLD_PASSES = 500


@dataclass(frozen=True)
class Floor:
    """Per-socket cost over the passes of one condition (µs per socket)."""

    sockets: int
    condition: str  # "hot" | "cold"
    passes: int
    median_us: float
    q1_us: float
    q3_us: float


def compile_floor(workdir: Path) -> Path:
    """Compile the C loop with the system cc; raise StepError naming what to install."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise StepError("no C compiler (cc) on PATH: install one (`apt-get install gcc`) to run this benchmark.")
    exe = workdir / "tcpinfo_floor"
    run([cc, "-O2", "-Wall", "-o", str(exe), str(SOURCE)], timeout=120)
    return exe


def measure(exe: Path, sockets: int, passes: int, evict_bytes: int) -> Floor:
    """Run the loop over ``sockets`` sockets for ``passes`` passes; quartiles of µs per socket."""
    res = run([str(exe), str(sockets), str(passes), str(evict_bytes)], timeout=600)
    per_socket = sorted(int(line) / 1000.0 / sockets for line in res.stdout.split())
    if len(per_socket) != passes:
        raise StepError(f"{exe} printed {len(per_socket)} pass times, expected {passes}:\n{res.tail()}")
    q1, med, q3 = statistics.quantiles(per_socket, n=4, method="inclusive")
    return Floor(sockets, "cold" if evict_bytes else "hot", passes, med, q1, q3)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or max(counts) > 5000:
        raise InputError(f"--sockets {text!r}: expected comma-separated socket counts from 1 to 5000, e.g. 10,100,1000")
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench.tcpinfo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sockets", default="1,10,100,1000", help="socket counts (default 1,10,100,1000)")
    p.add_argument("--passes", type=int, default=0,
                   help="passes per condition (default: 20,000 socket reads, at least 50 passes; cold: at most 500)")
    args = p.parse_args(argv)
    try:
        counts = _counts(args.sockets)
        with tempfile.TemporaryDirectory(prefix="kist-tcpinfo-") as tmp:
            exe = compile_floor(Path(tmp))
            rows = []
            for n in counts:
                passes = args.passes or max(50, 20000 // n)
                for evict in (0, EVICT_BYTES):  # evicting 32 MiB per pass is slow: fewer cold passes
                    f = measure(exe, n, passes if not evict else min(passes, COLD_PASSES), evict)
                    rows.append(f)
                    print(f"sockets={f.sockets:<5d} {f.condition:<4s} passes={f.passes:<5d} "
                          f"us_per_socket={f.median_us:.3f} (q1 {f.q1_us:.3f}, q3 {f.q3_us:.3f})", flush=True)
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    hot = [r.median_us for r in rows if r.condition == "hot"]
    cold = [r.median_us for r in rows if r.condition == "cold"]
    print(f"floor: getsockopt(TCP_INFO) + ioctl(SIOCOUTQNSD) per socket, median per pass: "
          f"hot {min(hot):.2f}-{max(hot):.2f} us, cold caches {min(cold):.2f}-{max(cold):.2f} us "
          f"({', '.join(str(n) for n in counts)} loopback sockets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
