"""Incremental variant builds: a built Tor tree kept in the cache, copied per variant.

``harness.build`` caches binaries only (its tree goes away with its temporary directory),
so a variant of one C file would cost a full five-minute build. Here the patched tree is
built once more, configured and compiled exactly as the cached build (same source, patch
series, flags; its key is the build's cache key) and kept under ``CACHE/trees/KEY``. A
variant is a copy of that tree (``cp -a --reflink=auto``: a reflink where the filesystem
has them), one edit applied, and ``make src/app/tor``: make rebuilds only the objects
whose sources changed and relinks. The copy lives in a temporary directory that is
removed when the ``variant()`` block ends, also on Ctrl-C or SIGTERM (harness.signals turns
those into KeyboardInterrupt, and harness.proc kills make's whole process group first).

The tree build takes the build cache's lock (harness.build._lock): two full builds at once
would each run make -j2 on the two shared cores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import build, outdir
from harness.errors import HarnessError, StepError
from harness.proc import run

log = logging.getLogger(__name__)

TREE_VERSION = 1  # bump when what a kept tree holds changes
DONE_FILE = "tree.json"
# A variant's own make steps: an object or two and a link, but the machine is shared.
VARIANT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Tree:
    """A configured, compiled Tor tree (``src``) matching the cached build ``base``."""

    src: Path
    key: str
    base: build.BuildResult


@dataclass(frozen=True)
class Variant:
    """A variant's tor, built in a copy of the tree; ``tree`` is gone after the block."""

    tor: Path
    tor_gencert: Path
    tree: Path
    copy_s: float
    make_s: float
    rebuilt: tuple[str, ...]  # the objects make compiled (not the links)


def ensure_tree(
    source: build.Source | str = "debian",
    patches_dir: Path | None = None,
    progress: build.ProgressFn | None = None,
    *,
    cache_dir: Path | None = None,
    configure_args: Sequence[str] = (),
) -> Tree:
    """The kept tree for ``source`` + ``patches_dir``, built (once) if the cache has none.

    The tested binary build comes first (``ensure_built``, cached): the tree is only kept
    for a series that passed Tor's unit tests.
    """
    base = build.ensure_built(source, patches_dir, progress, cache_dir=cache_dir, configure_args=configure_args)
    cache = (cache_dir or build.default_cache_dir()).resolve()
    trees = cache / "trees"
    final = trees / base.cache_key
    emit = build._Emitter(progress, time.monotonic())
    if _done(final):
        emit("tree", "cached", str(final / "src"))
        return Tree(final / "src", base.cache_key, base)
    trees.mkdir(parents=True, exist_ok=True)
    (cache / "builds").mkdir(parents=True, exist_ok=True)
    with build._lock(cache / "builds" / ".lock", emit):
        if not _done(final):
            src = build.Source.parse(source) if isinstance(source, str) else source
            with outdir.scratch_dir(f".tmp-{base.cache_key}-", trees) as tmp:
                _build_tree(tmp, build._resolve(src, cache), build.load_series(patches_dir), configure_args,
                            cache, emit)
                if final.exists():  # a tree without its done file: an interrupted earlier attempt
                    shutil.rmtree(final)
                tmp.rename(final)
                # the kept tree's Makefiles name the scratch path in abs_* variables: not used by
                # an object rebuild; a copy is somewhere else anyway (see variant())
    emit("tree", "done", str(final / "src"))
    return Tree(final / "src", base.cache_key, base)


def find_tree(patches_dir: Path | None, *, cache_dir: Path | None = None) -> Tree | None:
    """The kept tree if the cache has one for this series (never builds a tree; the binary
    build must be cached too, or this returns None)."""
    cache = (cache_dir or build.default_cache_dir()).resolve()
    try:
        series = build.load_series(patches_dir)
        key = build.cache_key(build._resolve(build.Source.parse("debian"), cache).ident, series, ())
    except HarnessError:
        return None
    base = build._load(cache / "builds" / key)
    entry = cache / "trees" / key
    return Tree(entry / "src", key, base) if base is not None and _done(entry) else None


def _done(entry: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return int(json.loads((entry / DONE_FILE).read_text())["version"]) == TREE_VERSION
    return False


def _build_tree(tmp: Path, resolved: build._Resolved, series: build.Series, configure_args: Sequence[str],
                cache: Path, emit: build._Emitter) -> None:
    """Unpack, patch, configure and compile as harness.build does (no tests: the build ran them)."""
    logdir = tmp / "logs"
    logdir.mkdir()
    steps: dict[str, float] = {}

    def step(name: str) -> contextlib.AbstractContextManager[None]:
        return build._timed(name, steps, emit, logdir, cache / "logs", f"tree-{tmp.name}")

    with step("source"):
        tree = build._unpack(resolved, cache, tmp / "src", logdir)
    with step("patches"):
        build.apply_series(series, tree, logdir)
    with step("configure"):
        build._step_cmd("configure", ["./configure", *build.CONFIGURE_FLAGS, *configure_args], tree, logdir)
    with step("make"):
        plan = build._step_cmd("make", ["make", "-n", "all", "src/test/test"], tree, logdir, log_output=False)
        meter = build.MakeProgress(build.planned_targets(plan.stdout), lambda text: emit("make", "progress", text))
        # two invocations, as harness.build does: one `make all src/test/test` builds the test
        # objects twice at once (all-am recurses) and races on their .deps files
        build._step_cmd("make", ["make", f"-j{build.JOBS}"], tree, logdir, on_line=meter.line)
        build._step_cmd("make", ["make", f"-j{build.JOBS}", "src/test/test"], tree, logdir, on_line=meter.line)
    (tmp / DONE_FILE).write_text(json.dumps({"version": TREE_VERSION, "source": resolved.description,
                                             "series": series.digest, "steps_s": steps}, indent=1) + "\n")


Edit = Callable[[Path], None]


@contextlib.contextmanager
def variant(tree: Tree, edit: Edit, *, say: Callable[[str], None] = lambda _m: None,
            targets: Sequence[str] = ("src/app/tor",), nice: int = 0) -> Iterator[Variant]:
    """A copy of ``tree``, ``edit`` applied to it, ``make targets`` run: yields the variant's tor.

    ``edit`` gets the copy's source root and raises (InputError) when its change does not
    apply; the copy is removed when the block ends, however it ends. ``nice`` lowers make's
    priority (a variant built while another one's network runs).
    """
    parent = tree.src.parent.parent  # CACHE/trees: same filesystem, so reflinks work
    with outdir.scratch_dir(f".var-{tree.key}-", parent) as tmp:
        t0 = time.monotonic()
        dest = tmp / "src"
        run(["cp", "-a", "--reflink=auto", str(tree.src), str(dest)], timeout=VARIANT_TIMEOUT_S)
        copy_s = time.monotonic() - t0
        say(f"copied the built tree in {copy_s:.1f} s")
        edit(dest)
        t1 = time.monotonic()
        compiled: list[str] = []

        def line(text: str) -> None:
            parts = text.split()
            if len(parts) >= 2 and parts[0] in ("CC", "CCLD", "AR"):
                if parts[0] == "CC":
                    compiled.append(parts[1])
                say(f"make: {parts[0]} {parts[1]}")

        env = {**os.environ, "MAKEFLAGS": "", "LC_ALL": "C"}
        res = run([*_nice(nice), "make", f"-j{build.JOBS}", *targets], cwd=dest, env=env, check=False,
                  timeout=VARIANT_TIMEOUT_S, on_line=line)
        if not res.ok:
            raise StepError(f"the variant does not compile (make {' '.join(targets)} exited {res.returncode}):\n"
                            f"{res.tail(25)}")
        make_s = time.monotonic() - t1
        say(f"built in {make_s:.1f} s ({len(compiled)} object(s) compiled: {', '.join(compiled) or 'none'})")
        yield Variant(dest / "src" / "app" / "tor", tree.base.tor_gencert, dest, round(copy_s, 2),
                      round(make_s, 2), tuple(compiled))


def make_more(v: Variant, targets: Sequence[str], timeout: float = VARIANT_TIMEOUT_S, nice: int = 0) -> float:
    """Build further targets in the variant's tree (e.g. ``src/test/test``); return the seconds taken."""
    env = {**os.environ, "MAKEFLAGS": "", "LC_ALL": "C"}
    res = run([*_nice(nice), "make", f"-j{build.JOBS}", *targets], cwd=v.tree, env=env, check=False,
              timeout=timeout)
    if not res.ok:
        raise StepError(f"make {' '.join(targets)} failed in the variant tree (exit {res.returncode}):\n"
                        f"{res.tail(25)}")
    return res.duration_s


def _nice(level: int) -> list[str]:
    return ["nice", "-n", str(level)] if level else []


def kill_commands_in(directory: Path) -> list[int]:
    """SIGKILL the process groups of this process's children working in ``directory``.

    A variant built in a worker thread (harness.mutants.matrix) runs make through
    harness.proc.run, whose child leads a session of its own; Python stops only the main
    thread on Ctrl-C, so the main thread ends that make here, by its pid, before it removes
    the tree. Returns the pids signalled.
    """
    me, hit = os.getpid(), []
    root = directory.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cwd = Path(os.readlink(entry / "cwd"))
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and cwd.is_relative_to(root):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(entry.name), signal.SIGKILL)
                hit.append(int(entry.name))
    return hit


__all__ = ["Tree", "Variant", "ensure_tree", "find_tree", "kill_commands_in", "make_more", "variant"]
