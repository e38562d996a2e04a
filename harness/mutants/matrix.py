"""The kill matrix: each mutant built incrementally and run through the edge scenario.

For every mutant of the catalogue (harness.mutants): a copy of the kept built tree with
the mutant's edits (harness.buildtree), optionally Tor's own scheduler unit tests on it,
then the edge scenario (harness.checks.edge, shortened to one arm cycle) with the variant
as every patched relay, replayed through the faithful model up to the first divergence.
A mutant is killed by the differential (first divergent run, decision index, both
choices), by an invariant of the record, by a queue-time mismatch, or by its run failing
(a tor crash, say); otherwise it survived. The unmutated build goes first (``baseline``):
if it diverges under the shortened scenario, no kill below means anything, and the matrix
stops there.

Results go to OUT/matrix.json and OUT/matrix.md after each mutant, so an interrupted
matrix resumes where it stopped (a mutant whose catalogue entry changed is run again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import build, buildtree, outdir
from harness.errors import CommandFailed, HarnessError, InputError
from harness.mutants import Mutant, apply

log = logging.getLogger(__name__)

MADE_BY = "kist-harness mutants"
MATRIX_JSON, MATRIX_MD = "matrix.json", "matrix.md"
BASELINE = "baseline"
# One cycle of the edge scenario's six arms, 6 s each: every arm (Vanilla, KISTLite, tiny,
# nan, huge factors) runs once, and the EINVAL fault lands in the last (KIST) slot.
DURATION_S, PERIOD_S = 36.0, 6.0
# Downloads still in flight when traffic ends are stopped after this long: the decisions a
# mutant gets wrong are recorded while traffic runs, not while the last bulk downloads finish.
DRAIN_S = 5.0
# A client finishes the download in flight when traffic ends (harness.traffic.clients): with the
# scenario's 5 MiB bulk downloads through the 75 KiB/s relay that took a minute per mutant.
SIZE_SCALE = 0.25
# Tor's own tests of the code the mutants change (src/test/test patterns).
UNIT_SUITES = ("scheduler/..", "circuitmux/..", "circuitmux_ewma/..")
UNIT_TIMEOUT_S = 60.0  # each suite takes about a second on the unmutated tree
UNIT_OUTPUT_TAIL = 200_000  # bytes of a suite's output kept


@dataclass
class Row:
    """One line of the matrix."""

    name: str
    kind: str
    digest: str = ""               # of the catalogue entry: a changed mutant is run again
    verdict: str = ""              # killed: differential | invariant | queue-times | run failed; survived
    divergence: dict[str, object] = field(default_factory=dict)  # run, relay, index, expected, actual
    invariant: str = ""
    run_error: str = ""
    unit_tests: str = ""           # "killed: <failing tests>" | "passed" | "not run"
    runs: int = 0
    decisions: int = 0
    downloads: int = 0
    rebuilt: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def killed(self) -> bool:
        return self.verdict.startswith("killed")


def digest(m: Mutant) -> str:
    return hashlib.sha256(json.dumps(asdict(m), sort_keys=True).encode()).hexdigest()[:12]


Say = Callable[[str], None]


def run_matrix(mutants: Sequence[Mutant], out: Path, *, duration_s: float = DURATION_S,
               period_s: float = PERIOD_S, unit_tests: bool = True, fresh: bool = False,
               baseline: bool = True, say: Say = print) -> tuple[list[Row], float]:
    """Run every mutant (resuming OUT's earlier results unless ``fresh``); return rows and seconds.

    ``baseline=False`` skips the unmutated run (a single-mutant check whose baseline is known).
    While one variant's network runs, the next variant is built and unit-tested in a worker
    thread at a lower CPU priority (the differential compares decisions, not timing).
    """
    t0 = time.monotonic()
    out = out.resolve()
    outdir.check(out)
    if os.geteuid() != 0:
        raise InputError("kist-harness mutants runs the edge scenario, which attaches strace to tor and "
                         "moves it into a cgroup: run it as root.")
    done: dict[str, Row] = {} if fresh else _load_rows(out)
    owned = outdir.OwnedDir(out, MADE_BY) if done else outdir.claim(out, MADE_BY)
    by_name = {m.name: m for m in mutants}
    order = [BASELINE] * baseline + [m.name for m in mutants]
    rows: dict[str, Row] = {}
    for name in order:
        prev = done.get(name)
        m = by_name.get(name)
        if prev is not None and prev.verdict and prev.digest == (digest(m) if m else BASELINE):
            rows[name] = prev
            say(f"{_tag(order, name, baseline)} done earlier: {prev.verdict}")
    todo = [n for n in order if n not in rows]
    say(f"{len(mutants)} mutants ({sum(m.kind == 'historical' for m in mutants)} historical), {len(todo)} to run; "
        f"edge scenario {duration_s:g} s of traffic, arms every {period_s:g} s; Tor unit tests "
        f"{'on' if unit_tests else 'off'}")
    tree = buildtree.ensure_tree(patches_dir=build.default_patches_dir(), progress=_build_say(say))
    say(f"built tree: {tree.src}")
    ahead: _Ahead | None = None
    try:
        for k, name in enumerate(todo):
            tag = _tag(order, name, baseline)
            m = by_name.get(name)
            if ahead is not None and ahead.name == name:
                ready = ahead.take()
                ahead = None
            else:
                ready = _prepare(m, name, tree, unit_tests and m is not None, _tagged(say, tag), nice=0)
            try:
                if k + 1 < len(todo):  # the next variant builds while this one's network runs
                    nxt = todo[k + 1]
                    ahead = _Ahead(nxt, by_name.get(nxt), tree, unit_tests,
                                   _tagged(say, _tag(order, nxt, baseline) + " (ahead)"))
                row = _one(m, name, ready, out, duration_s, period_s, _tagged(say, tag))
            finally:
                ready.stack.close()  # the variant's tree goes now, whatever happened
            rows[name] = row
            say(f"{tag} {row.verdict}; unit tests: {row.unit_tests}; {row.seconds.get('total', 0):.0f} s")
            _write(out, [rows[n] for n in order if n in rows], time.monotonic() - t0, duration_s, period_s)
            owned.record()
            if name == BASELINE and row.killed:
                raise HarnessError(f"the unmutated build already fails the shortened edge scenario ({row.verdict}: "
                                   f"{row.divergence or row.invariant or row.run_error}); fix that first, or "
                                   "lengthen --duration. No mutant was run.")
    finally:
        if ahead is not None:
            ahead.cancel(tree)
        owned.record()
    total = time.monotonic() - t0
    ordered = [rows[n] for n in order if n in rows]
    _write(out, ordered, total, duration_s, period_s)
    owned.record()
    return ordered, total


def _tag(order: list[str], name: str, baseline: bool) -> str:
    return f"[{order.index(name) + 1 - baseline}/{len(order) - baseline} {name}]"


def _tagged(say: Say, tag: str) -> Say:
    return lambda text: say(f"{tag} {text}")


def _build_say(say: Say) -> build.ProgressFn:
    def progress(ev: build.StepEvent) -> None:
        if ev.status in ("start", "done", "failed", "cached", "progress"):
            say(f"build {ev.step}: {ev.status} {ev.detail}".rstrip())
    return progress


@dataclass
class _Ready:
    """A built variant (or why it could not be built); closing ``stack`` removes its tree."""

    stack: contextlib.ExitStack
    variant: buildtree.Variant | None = None
    unit_tests: str = "not run"
    seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""


def _prepare(m: Mutant | None, name: str, tree: buildtree.Tree, unit_tests: bool, say: Say,
             nice: int) -> _Ready:
    stack = contextlib.ExitStack()

    def edit(src: Path) -> None:
        if m is not None:
            apply(m, src)

    try:
        v = stack.enter_context(buildtree.variant(tree, edit, say=say, nice=nice))
        ready = _Ready(stack, v, seconds={"copy": v.copy_s, "make": v.make_s})
        if m is None:
            ready.unit_tests = "not run (the cached build passed them)"
        elif unit_tests:
            t1 = time.monotonic()
            ready.unit_tests = _unit_tests(v, say, nice)
            ready.seconds["unit_tests"] = round(time.monotonic() - t1, 1)
        return ready
    except HarnessError as exc:
        stack.close()
        return _Ready(contextlib.ExitStack(), error=_short(str(exc), 600))
    except BaseException:
        stack.close()
        raise


class _Ahead:
    """The next variant, prepared in a worker thread (nice 10) while the current one runs."""

    def __init__(self, name: str, m: Mutant | None, tree: buildtree.Tree, unit_tests: bool, say: Say) -> None:
        self.name = name
        self.box: list[_Ready | BaseException] = []
        self.stopping = False

        def work() -> None:
            try:
                self.box.append(_prepare(m, name, tree, unit_tests and m is not None, say, nice=10))
            except BaseException as exc:  # handed to the main thread
                self.box.append(exc)

        self.thread = threading.Thread(target=work, name=f"mutant-{name}", daemon=True)
        self.thread.start()

    def take(self) -> _Ready:
        self.thread.join()
        item = self.box[0]
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self, tree: buildtree.Tree) -> None:
        """Stop the worker's make (by pid) and wait until its tree is removed."""
        while self.thread.is_alive():
            buildtree.kill_commands_in(tree.src.parent.parent)
            self.thread.join(timeout=0.5)
        for item in self.box:
            if isinstance(item, _Ready):
                item.stack.close()


def _one(m: Mutant | None, name: str, ready: _Ready, out: Path, duration_s: float, period_s: float,
         say: Say) -> Row:
    from harness.checks import edge

    row = Row(name, m.kind if m else "-", digest(m) if m else BASELINE, unit_tests=ready.unit_tests,
              seconds=dict(ready.seconds))
    if ready.variant is None:
        row.verdict = "not built"
        row.run_error = ready.error
        return row
    row.rebuilt = list(ready.variant.rebuilt)
    run_dir = out / "runs" / name
    if run_dir.exists():  # an interrupted earlier attempt of this mutant, inside our own output
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t2 = time.monotonic()
    say(f"edge scenario ({duration_s:g} s of traffic)")
    try:
        outcome, _plan = edge.run_edge(run_dir, tor=ready.variant.tor, duration_s=duration_s, period_s=period_s,
                                       first_divergence_only=True, lethal=False, drain_s=DRAIN_S,
                                       size_scale=SIZE_SCALE)
    except HarnessError as exc:
        row.seconds["edge"] = round(time.monotonic() - t2, 1)
        row.run_error = _short(str(exc))
        row.verdict = "killed: run failed"
        row.seconds["total"] = round(sum(row.seconds.values()), 1)
        return row
    row.seconds["edge"] = round(time.monotonic() - t2, 1)
    row.runs, row.decisions, row.downloads = outcome.runs, outcome.decisions, outcome.downloads
    if outcome.first_divergence is not None:
        d = outcome.first_divergence
        row.divergence = {"run": d.run, "relay": d.relay, "index": d.index, "expected": d.expected,
                          "actual": d.actual, "why": d.explanation, "reproducer": d.reproducer}
        row.verdict = "killed: differential"
    elif outcome.invariant_violations:
        row.invariant = outcome.invariant_violations[0]
        row.verdict = "killed: invariant"
    elif outcome.queue_mismatches:
        row.verdict = "killed: queue-times"
    elif outcome.runs == 0:
        row.verdict = "killed: run failed"
        row.run_error = "no KIST_RUN record was collected"
    else:
        row.verdict = "survived" if m is not None else "clean: 0 divergences"
    row.seconds["total"] = round(sum(row.seconds.values()), 1)
    return row


def _unit_tests(v: buildtree.Variant, say: Say, nice: int = 0) -> str:
    """Tor's scheduler/circuitmux suites on the variant: 'passed' or 'killed: ...' (the failing tests)."""
    from harness.proc import run

    try:
        secs = buildtree.make_more(v, ["src/test/test"], nice=nice)
    except HarnessError as exc:
        return f"not run: src/test/test does not build ({_short(str(exc), 120)})"
    say(f"src/test/test built in {secs:.0f} s")
    failed: list[str] = []
    for pattern in UNIT_SUITES:
        try:
            # only the output's tail is kept: a test a mutant sends into a loop can print gigabytes
            # (one did: the matrix was OOM-killed at 23 GB), and proc.run keeps all it reads
            prefix = f"nice -n {nice} " if nice else ""
            res = run(["bash", "-o", "pipefail", "-c",
                       f"{prefix}./src/test/test {shlex.quote(pattern)} 2>&1 | tail -c {UNIT_OUTPUT_TAIL}"],
                      cwd=v.tree, check=False, timeout=UNIT_TIMEOUT_S)
        except CommandFailed:  # a mutant can make a test loop forever (a limit never reached)
            failed.append(f"{pattern} hung (killed after {UNIT_TIMEOUT_S:g} s)")
            continue
        if not res.ok:
            group = pattern.removesuffix("/..")
            names = [f"{group}/{n}" for n in re.findall(r"\[([\w.-]+) FAILED\]", res.stdout)]
            failed.append(", ".join(dict.fromkeys(names)) or f"{pattern} (exit {res.returncode})")
    return f"killed: {'; '.join(failed)}" if failed else "passed"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_rows(out: Path) -> dict[str, Row]:
    try:
        data = json.loads((out / MATRIX_JSON).read_text())
        return {r["name"]: Row(**r) for r in data["rows"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write(out: Path, rows: list[Row], total_s: float, duration_s: float, period_s: float) -> None:
    summary = summarize(rows)
    data = {"made_by": MADE_BY, "duration_s": duration_s, "period_s": period_s, "total_s": round(total_s, 1),
            "load_average": list(os.getloadavg()), "summary": summary, "rows": [asdict(r) for r in rows]}
    tmp = out / f"{MATRIX_JSON}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, out / MATRIX_JSON)
    (out / MATRIX_MD).write_text(markdown(rows, total_s, summary))


def summarize(rows: list[Row]) -> dict[str, str]:
    out = {}
    for kind in ("historical", "synthetic"):
        rs = [r for r in rows if r.kind == kind]
        diff = sum(r.verdict == "killed: differential" for r in rs)
        any_k = sum(r.killed for r in rs)
        unit = sum(r.unit_tests.startswith("killed") for r in rs)
        out[kind] = (f"{diff}/{len(rs)} killed by the differential, {any_k}/{len(rs)} killed in all, "
                     f"{unit}/{len(rs)} by Tor's unit tests")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row], total_s: float, summary: dict[str, str] | None = None) -> str:
    summary = summary or summarize(rows)
    lines = ["| mutant | kind | verdict | first divergence (relay run, decision: model / tor) | "
             "Tor unit tests | s |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.divergence:
            d = r.divergence
            where = f"{d['relay']} run {d['run']}, decision {d['index']}: `{d['expected']}` / `{d['actual']}`"
        else:
            where = r.invariant or r.run_error or f"{r.runs} runs, {r.decisions} decisions, none"
        lines.append(f"| {r.name} | {r.kind} | {r.verdict} | {_cell(_short(where, 160))} | "
                     f"{_cell(_short(r.unit_tests, 80))} | {r.seconds.get('total', 0):.0f} |")
    lines += ["", f"historical: {summary['historical']}", f"synthetic: {summary['synthetic']}",
              f"total time: {total_s / 60:.1f} min ({total_s:.0f} s)", ""]
    return "\n".join(lines)


__all__ = ["BASELINE", "DURATION_S", "PERIOD_S", "Row", "markdown", "run_matrix", "summarize"]
