"""Which decision branches of kist_reference the replayed runs took: the differential's power.

Zero divergences says something only about the paths the recorded runs drove the model
through. This module measures those paths with coverage.py in branch mode while the
differential replays (``harness.checks.differential.check``), per store and cumulatively in a coverage data
file, and names every branch never taken by its function and the source text of its
condition (``KistPolicy.run: if not chan.open -> true``), so a reader sees *which* of Tor's
paths (a channel closing mid-run, a failed write, KISTLite, ...) the result does not speak for.

Only the decision modules are measured (``MODEL_MODULES``); replay's own bookkeeping and the
trace parser are not decisions. Arcs are recorded under a static context naming a hash of
those modules' source, so a cumulative file kept across model edits never counts a line
number of an older model against the current one (the older contexts stay in the file).
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import coverage
from coverage.exceptions import CoverageException

from harness.errors import InputError

MODEL_MODULES = ("scheduler", "channel", "ewma", "socket", "heap")
CONTEXT_PREFIX = "kist_reference-"
DATA_FILE_NAME = "model-coverage.sqlite"  # the default cumulative file, beside the store


def model_files() -> dict[str, str]:
    """module name -> absolute path of the kist_reference decision modules being measured."""
    import kist_reference

    base = Path(kist_reference.__file__).resolve().parent
    return {m: str(base / f"{m}.py") for m in MODEL_MODULES}


def model_version() -> str:
    """A hash of the measured modules' source: arcs are only comparable within one version."""
    h = hashlib.sha256()
    for m, path in model_files().items():
        h.update(m.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Branch:
    """One way out of one decision point of the model."""

    module: str      # "scheduler"
    function: str    # qualified: "KistPolicy.run"
    line: int        # the decision's line
    target: int      # where the arc goes; negative: out of the function
    statement: str   # if, elif, while, for (or "line" when no statement is found there)
    condition: str   # the test's source text, whitespace folded
    direction: str   # true / false (if, while), iterates / done (for)

    @property
    def key(self) -> str:
        """A name that survives edits elsewhere in the file (no line numbers)."""
        return f"{self.module}.{self.function}: {self.statement} {self.condition} -> {self.direction}"

    def describe(self) -> str:
        return f"{self.key} (kist_reference/{self.module}.py:{self.line})"


@dataclass(frozen=True)
class ModuleBranches:
    module: str
    branches: int
    taken: int

    @property
    def percent(self) -> float:
        return 100.0 * self.taken / self.branches if self.branches else 100.0


@dataclass(frozen=True)
class BranchCoverage:
    """Branches of the decision modules one body of replayed runs took and did not take."""

    modules: tuple[ModuleBranches, ...]
    taken: tuple[Branch, ...]
    missing: tuple[Branch, ...]

    @property
    def branches(self) -> int:
        return sum(m.branches for m in self.modules)

    @property
    def n_taken(self) -> int:
        return sum(m.taken for m in self.modules)

    @property
    def percent(self) -> float:
        return 100.0 * self.n_taken / self.branches if self.branches else 100.0

    def line(self) -> str:
        """``62.1% (180/290)``: the figure the summary line shows."""
        return f"{self.percent:.1f}% ({self.n_taken}/{self.branches})"

    def per_module(self) -> str:
        return ", ".join(f"{m.module} {m.percent:.0f}%" for m in self.modules)

    def keys(self) -> frozenset[str]:
        return frozenset(b.key for b in self.taken)

    def unreachable(self) -> tuple[Branch, ...]:
        """Untaken branches a replay of real Tor cannot take (harness.checks.reachability)."""
        from harness.checks.reachability import why

        return tuple(b for b in self.missing if why(b.key) is not None)

    def gaps(self) -> tuple[Branch, ...]:
        """Untaken branches a real Tor's records can drive: what the runs did not watch."""
        from harness.checks.reachability import why

        return tuple(b for b in self.missing if why(b.key) is None)

    def reachable_line(self) -> str:
        total = self.branches - len(self.unreachable())
        pct = 100.0 * self.n_taken / total if total else 100.0
        return f"{pct:.1f}% ({self.n_taken}/{total})"


@dataclass(frozen=True)
class CoverageReport:
    """This store's coverage, and the cumulative coverage of every replay into ``data_file``."""

    store: BranchCoverage
    cumulative: BranchCoverage | None = None
    data_file: str | None = None
    older_versions: int = 0  # contexts in data_file from an edited model: kept, not counted

    def summary(self) -> str:
        out = f"model_branches={self.store.line()} reachable={self.store.reachable_line()}"
        if self.cumulative is not None:
            out += f" cumulative={self.cumulative.line()} reachable={self.cumulative.reachable_line()}"
        return out

    def head(self) -> list[str]:
        """The figures alone: this store's, and the cumulative file's."""
        return self.lines(max_missing=0)[: 2 if self.cumulative is not None else 1]

    def lines(self, max_missing: int = 200, reasons: bool = False) -> list[str]:
        """What the report and the CLI say: the figures, then every reachable branch never taken,
        by name (and, with ``reasons``, the unreachable ones and why)."""
        from harness.checks.reachability import why

        s = self.store
        out = [f"Model decision branches taken by these runs: {s.line()}; of those a real Tor's records can "
               f"drive: {s.reachable_line()} — {s.per_module()}."]
        if self.cumulative is not None:
            c = self.cumulative
            old = (f"; {self.older_versions} older model version(s) in the file are not counted"
                   if self.older_versions else "")
            out.append(f"Cumulative over every replay into {self.data_file}: {c.line()}; reachable "
                       f"{c.reachable_line()} — {c.per_module()}{old}.")
        final = self.cumulative or s
        gaps = final.gaps()
        which = "cumulatively" if self.cumulative is not None else "by these runs"
        if gaps:
            out.append(f"Reachable branches never taken {which} ({len(gaps)}):")
            out += [f"  {b.describe()}" for b in gaps[:max_missing]]
            if len(gaps) > max_missing:
                out.append(f"  ... and {len(gaps) - max_missing} more")
        unreachable = final.unreachable()
        if unreachable:
            out.append(f"Branches a replay of real Tor cannot take ({len(unreachable)}; "
                       "harness/checks/reachability.py):")
            if reasons:
                for b in unreachable[:max_missing]:
                    u = why(b.key)
                    out.append(f"  {b.describe()} — {u.kind}: {u.reason}" if u else f"  {b.describe()}")
        return out


# --------------------------------------------------------------------------- measuring


class ModelCoverage:
    """coverage.py (branch mode) around each replayed run; ``finish`` gives the result.

    Construct it before anything changes on disk: a cumulative file that exists but is not
    one this module wrote is refused here, not after the replay.
    """

    def __init__(self, cumulative: Path | None = None) -> None:
        self.files = model_files()
        self.version = model_version()
        self.context = CONTEXT_PREFIX + self.version
        self.cumulative = cumulative
        if cumulative is not None:
            _read_existing(cumulative, self.files)  # refused now, before the replay, if not ours
        self._cov = coverage.Coverage(data_file=None, branch=True, config_file=False,
                                      include=list(self.files.values()), context=self.context)
        self.runs = 0

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """Trace the model while the body runs (one replayed run)."""
        self._cov.start()
        try:
            yield
        finally:
            self._cov.stop()
            self.runs += 1

    def finish(self) -> CoverageReport:
        """This store's branches; merged into the cumulative file (written atomically) if any."""
        store = analyse(self._cov, self.files)
        if self.cumulative is None:
            return CoverageReport(store)
        path = self.cumulative
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two replays into one file at once: the second re-reads under the lock, so neither's
        # arcs are lost; the file itself is replaced atomically.
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = _read_existing(path, self.files)
            fd, tmp = tempfile.mkstemp(prefix=".model-coverage-", dir=path.parent)
            os.close(fd)
            try:
                os.unlink(tmp)  # CoverageData creates its own SQLite file
                merged = coverage.CoverageData(basename=tmp)
                if existing is not None:
                    merged.update(existing, map_path=lambda p: _remap(p, self.files))
                merged.update(self._cov.get_data())
                merged.write()
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        cum = coverage.Coverage(data_file=str(path), branch=True, config_file=False,
                                include=list(self.files.values()))
        cum.load()
        data = cum.get_data()
        contexts = data.measured_contexts()
        data.set_query_contexts(["^" + re.escape(self.context) + "$"])
        return CoverageReport(store, analyse(cum, self.files), str(path),
                              sum(1 for c in contexts if c != self.context))


def _read_existing(path: Path, files: dict[str, str]) -> coverage.CoverageData | None:
    """The cumulative file as it is, after checking it is one of ours; None if absent."""
    if not path.exists():
        return None
    if not path.is_file():
        raise InputError(f"coverage data file {path}: not a file; name a file (new or written by kist-harness).")
    data = coverage.CoverageData(basename=str(path))
    try:
        data.read()
        measured = data.measured_files()
        contexts = data.measured_contexts()
        has_arcs = data.has_arcs()
    except CoverageException as exc:
        raise InputError(f"coverage data file {path}: not a coverage.py data file ({exc}); kist-harness does "
                         "not overwrite it — name another file.") from exc
    foreign = sorted(p for p in measured if _remap(p, files) == p and p not in files.values())
    bad_ctx = sorted(c for c in contexts if not c.startswith(CONTEXT_PREFIX))
    if foreign or bad_ctx or (measured and not has_arcs):
        what = foreign[:3] or bad_ctx[:3] or ["line (not branch) data"]
        raise InputError(f"coverage data file {path}: written by something other than kist-harness (it holds "
                         f"{', '.join(what)}); kist-harness does not overwrite it — name another file.")
    return data


def _remap(path: str, files: dict[str, str]) -> str:
    """A model module measured in another checkout -> the same module here."""
    p = Path(path)
    if p.parent.name == "kist_reference" and p.stem in files:
        return files[p.stem]
    return path


# --------------------------------------------------------------------------- naming arcs


def analyse(cov: coverage.Coverage, files: dict[str, str]) -> BranchCoverage:
    """Taken and missing branch arcs of each module, named through its syntax tree."""
    modules: list[ModuleBranches] = []
    taken: list[Branch] = []
    missing: list[Branch] = []
    for module, path in files.items():
        analysis = cov._analyze(path)  # the public analysis2() reports lines, not branches
        names = _BranchNames(module, Path(path).read_text())
        miss = analysis.missing_branch_arcs()
        done = analysis.executed_branch_arcs()
        n_missing = sum(len(v) for v in miss.values())
        n_taken = sum(len(v) for v in done.values())
        modules.append(ModuleBranches(module, n_missing + n_taken, n_taken))
        missing += [names.branch(src, dst) for src in sorted(miss) for dst in sorted(miss[src])]
        taken += [names.branch(src, dst) for src in sorted(done) for dst in sorted(done[src])]
    return BranchCoverage(tuple(modules), tuple(taken), tuple(missing))


class _BranchNames:
    """Line -> enclosing function and decision statement of one module's source."""

    def __init__(self, module: str, source: str) -> None:
        self.module = module
        self.source = source
        self.lines = source.splitlines()
        self.stmts: dict[int, ast.stmt] = {}
        self.funcs: dict[int, str] = {}
        self._walk(ast.parse(source), [])
        # the same test twice in one function: the later ones are numbered, in source order,
        # so a branch's key does not depend on which other branches were taken
        self.suffix: dict[int, str] = {}
        seen: dict[tuple[str, str], int] = {}
        for ln in sorted(self.stmts):
            k = (self.funcs.get(ln, "<module>"), self._describe(ln)[1])
            seen[k] = seen.get(k, 0) + 1
            if seen[k] > 1:
                self.suffix[ln] = f" [#{seen[k]}]"

    def _walk(self, node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = [*scope, child.name]
                if not isinstance(child, ast.ClassDef):
                    for ln in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                        self.funcs[ln] = ".".join(inner)
                self._walk(child, inner)
                continue
            if isinstance(child, (ast.If, ast.While, ast.For, ast.AsyncFor)):
                self.stmts.setdefault(child.lineno, child)
            self._walk(child, scope)

    def _describe(self, src: int) -> tuple[str, str]:
        """(statement, condition text) of the decision at ``src``."""
        node = self.stmts.get(src)
        if isinstance(node, (ast.If, ast.While)):
            text = self.lines[src - 1].lstrip()
            statement = "elif" if isinstance(node, ast.If) and text.startswith("elif") else (
                "if" if isinstance(node, ast.If) else "while")
            return statement, _folded(ast.get_source_segment(self.source, node.test) or "?")
        if isinstance(node, (ast.For, ast.AsyncFor)):
            target = ast.get_source_segment(self.source, node.target) or "?"
            return "for", _folded(f"{target} in {ast.get_source_segment(self.source, node.iter) or '?'}")
        return "line", _folded(self.lines[src - 1] if 0 < src <= len(self.lines) else "?")

    def branch(self, src: int, dst: int) -> Branch:
        func = self.funcs.get(src, "<module>")
        node = self.stmts.get(src)
        statement, condition = self._describe(src)
        if isinstance(node, (ast.If, ast.While)):
            direction = "true" if node.body and dst == node.body[0].lineno else "false"
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            direction = "iterates" if node.body and dst == node.body[0].lineno else "done"
        else:
            direction = f"to line {dst}" if dst > 0 else "out of the function"
        return Branch(self.module, func, src, dst, statement, condition + self.suffix.get(src, ""), direction)


def _folded(text: str) -> str:
    return " ".join(text.split())


def module_table(report: CoverageReport) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The report's table: per module, branches, those a replay cannot take, and the share taken
    of all and of the reachable ones (this store; cumulative when a data file was given)."""
    head: tuple[str, ...] = ("module", "branches", "not reachable", "taken", "% of all", "% of reachable")
    if report.cumulative is not None:
        head += ("taken (cumulative)", "% of reachable (cumulative)")

    def cells(cov: BranchCoverage, module: str | None) -> tuple[int, int, int]:
        pick = (lambda b: b.module == module) if module else (lambda b: True)  # noqa: E731
        taken = sum(1 for b in cov.taken if pick(b))
        unreachable = sum(1 for b in cov.unreachable() if pick(b))
        return taken + sum(1 for b in cov.missing if pick(b)), unreachable, taken

    rows = []
    for module in [*(m.module for m in report.store.modules), None]:
        total, unreachable, taken = cells(report.store, module)
        row: tuple[str, ...] = (module or "all", str(total), str(unreachable), str(taken),
                                _pct(taken, total), _pct(taken, total - unreachable))
        if report.cumulative is not None:
            ctotal, cunreachable, ctaken = cells(report.cumulative, module)
            row += (str(ctaken), _pct(ctaken, ctotal - cunreachable))
        rows.append(row)
    return head, rows


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.1f}" if d else "-"
