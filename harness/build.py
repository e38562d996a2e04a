"""Tor source + patch series -> a unit-tested tor binary, cached by what went into it.

``ensure_built()`` is the one entry point: the network, deploy and run code call it and
get a ``BuildResult`` naming the ``tor`` and ``tor-gencert`` binaries. The cache key hashes
the exact source (the Debian ``.dsc`` checksum, the tarball bytes or the git tree), the
patch series (every patch and the ``series`` file) and every configure flag and test
suite, so a warm call only recomputes the key and reads one small JSON file.

A build happens in a temporary directory inside the cache and is renamed into place only
after every step passed, so a failed or interrupted build leaves the cache as it was.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness import host, outdir
from harness.errors import CommandFailed, InputError, StepError
from harness.makeprogress import MakeProgress, planned_targets
from harness.proc import Result, run

log = logging.getLogger(__name__)

# Bump when the pipeline changes in a way that changes the binary or what was tested.
BUILDER_VERSION = 1
JOBS = 2  # two cores are shared on the reference machine: never more

# Unit tests on (Tor's default, made explicit); no asciidoc/manpages: they cost minutes.
CONFIGURE_FLAGS: tuple[str, ...] = (
    "--enable-unittests", "--disable-asciidoc", "--disable-manpage", "--disable-html-manual",
)
# Tor's own suites around the scheduler and the control events the patch touches.
TOR_SUITES: tuple[str, ...] = (
    "scheduler/..", "circuitmux/..", "circuitmux_ewma/..", "channel/..", "relay/..",
    "control/event/..",
)
# Optional file in the patches directory: test patterns the series adds (one a line).
SUITES_FILE = "suites"

STEP_TIMEOUT_S = {"source": 900, "patches": 120, "configure": 900, "make": 5400,
                  "style": 300, "tests": 1800}

PATCH_FIELDS = {  # DEP-3 field -> the git format-patch header that may stand in for it
    "Description": "Subject", "Author": "From", "Forwarded": None, "Last-Update": None,
}


def default_cache_dir() -> Path:
    """Where sources and builds are cached (``$XDG_CACHE_HOME/kist-harness``, read at call time)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kist-harness"


def default_patches_dir() -> Path:
    """The repository's ``patches/``: next to the package in a checkout; from a wheel (tox
    installs one), the checkout found from the working directory upwards."""
    here = Path(__file__).resolve().parent.parent / "patches"
    if (here / "series").is_file():
        return here
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / "patches" / "series").is_file() and (d / "kist_reference").is_dir():
            return d / "patches"
    raise InputError("cannot find the kist-harness patch series (patches/series): run from the "
                     "kist-harness checkout, or pass --patches DIR, or --no-patches for stock Tor.")


# --------------------------------------------------------------------------- records


class SourceKind(enum.Enum):
    DEBIAN = "debian"    # `apt-get source PACKAGE`
    TARBALL = "tarball"  # a release tarball on disk
    GIT = "git"          # a git checkout (its HEAD commit)


@dataclass(frozen=True)
class Source:
    """Where Tor's source comes from; ``parse`` turns a CLI word into one."""

    kind: SourceKind
    location: str  # package name (DEBIAN) or absolute path

    @classmethod
    def parse(cls, text: str) -> Source:
        if text == "debian" or text.startswith("debian:"):
            return cls(SourceKind.DEBIAN, text.partition(":")[2] or "tor")
        path = Path(text).expanduser().resolve()
        if path.is_dir() and (path / ".git").exists():
            return cls(SourceKind.GIT, str(path))
        if path.is_file() and re.search(r"\.tar(\.(gz|xz|bz2|zst))?$|\.tgz$", path.name):
            return cls(SourceKind.TARBALL, str(path))
        raise InputError(f"--source {text!r}: expected `debian` (or `debian:PACKAGE`), a Tor release "
                         f"tarball (.tar.gz/.tar.xz) or a git checkout directory; {path} is neither.")


@dataclass(frozen=True)
class Patch:
    name: str
    path: Path
    description: str


@dataclass(frozen=True)
class Series:
    """A quilt series: patches in apply order, plus the test patterns they add."""

    directory: Path
    patches: tuple[Patch, ...]
    suites: tuple[str, ...]
    digest: str


@dataclass(frozen=True)
class SuiteResult:
    pattern: str
    passed: int
    skipped: int
    duration_s: float


@dataclass(frozen=True)
class BuildResult:
    """A built, tested tor: what callers need to run it and to label what they record."""

    tor: Path
    tor_gencert: Path
    version: str
    series_hash: str
    cache_key: str
    source: str = ""
    suites: tuple[SuiteResult, ...] = ()
    cached: bool = True


@dataclass(frozen=True)
class StepEvent:
    """Progress: a step started, finished, failed or was served from the cache."""

    step: str
    status: str  # "start" | "progress" | "done" | "failed" | "cached"
    elapsed_s: float  # since ensure_built() was called
    detail: str = ""


ProgressFn = Callable[[StepEvent], None]


class PatchDoesNotApply(StepError):
    """A patch of the series does not apply to this Tor tree; names the patch, file and hunk."""


# --------------------------------------------------------------------------- series


def load_series(patches_dir: Path | None) -> Series:
    """Read and check a quilt series; ``None`` or a directory without patches is the empty series."""
    if patches_dir is None:
        return Series(Path("/dev/null"), (), (), _digest([]))
    patches_dir = patches_dir.resolve()
    if not patches_dir.is_dir():
        raise InputError(f"patches directory {patches_dir} does not exist; pass --patches DIR or --no-patches.")
    series_file = patches_dir / "series"
    on_disk = sorted(p.name for p in patches_dir.glob("*.patch"))
    if not series_file.is_file():
        if on_disk:
            raise InputError(f"{patches_dir} holds {len(on_disk)} .patch files but no `series` file: list "
                             "them, one a line in apply order, in series (quilt format).")
        return Series(patches_dir, (), (), _digest([]))
    patches = []
    for lineno, raw in enumerate(series_file.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, *opts = line.split()
        if opts not in ([], ["-p1"]):
            raise InputError(f"{series_file}:{lineno}: options {' '.join(opts)!r} are not supported; "
                             "the series applies with -p1 (git format-patch), so drop them.")
        path = patches_dir / name
        if not path.is_file():
            raise InputError(f"{series_file}:{lineno}: patch {name} is listed but {path} does not exist.")
        patches.append(Patch(name, path, _check_dep3(path)))
    unlisted = set(on_disk) - {p.name for p in patches}
    if unlisted:
        log.warning("patches not in %s (ignored): %s", series_file, ", ".join(sorted(unlisted)))
    suites: tuple[str, ...] = ()
    suites_file = patches_dir / SUITES_FILE
    if suites_file.is_file():
        suites = tuple(ln.strip() for ln in suites_file.read_text().splitlines()
                       if ln.strip() and not ln.startswith("#"))
    parts = [(p.name, p.path.read_bytes()) for p in patches]
    parts.append((SUITES_FILE, "\n".join(suites).encode()))
    return Series(patches_dir, tuple(patches), suites, _digest(parts))


def stack_series(base: Series, extra: Series) -> Series:
    """``base`` with ``extra``'s patches applied after it: a researcher's change on top of the
    project's series (``kist-harness run --patches DIR``), which emits the KIST_RUN records the
    differential replays. Extra patches are named ``<their directory>/<file>`` in messages and
    build.json; the digest covers both series, and equals ``base``'s when ``extra`` is empty."""
    if not extra.patches and not extra.suites:
        return base
    prefix = extra.directory.name
    patches = (*base.patches, *(replace(p, name=f"{prefix}/{p.name}") for p in extra.patches))
    suites = (*base.suites, *extra.suites)
    parts = [(p.name, p.path.read_bytes()) for p in patches]
    parts.append((SUITES_FILE, "\n".join(suites).encode()))
    return Series(base.directory, patches, suites, _digest(parts))


def _digest(parts: Sequence[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in parts:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _check_dep3(path: Path) -> str:
    """Check the DEP-3 header (git's From/Subject stand in for Author/Description); return the description."""
    head = path.read_text(errors="replace").split("\n---\n", 1)[0].split("\ndiff --git", 1)[0]
    fields: dict[str, str] = {}
    for line in head.splitlines():
        m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
        if m:
            fields.setdefault(m.group(1), m.group(2))
    missing = [f for f, alt in PATCH_FIELDS.items() if f not in fields and (alt is None or alt not in fields)]
    if missing:
        raise InputError(f"patch {path}: DEP-3 header field(s) {', '.join(missing)} missing; add them to the "
                         "header above the diff (Description, Author, Forwarded: no, Last-Update: YYYY-MM-DD).")
    desc = fields.get("Description") or fields.get("Subject", "")
    return re.sub(r"^\[PATCH[^\]]*\]\s*", "", desc)


def apply_series(series: Series, tree: Path, logdir: Path) -> None:
    """Apply each patch strictly (no fuzz), checking it first so a failure names patch, file and hunk."""
    for patch in series.patches:
        base = ["patch", "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch",
                "--reject-file=-", "-i", str(patch.path)]
        check = run([*base, "--dry-run"], cwd=tree, check=False, timeout=STEP_TIMEOUT_S["patches"])
        _write_log(logdir / "patches.log", check, append=True)
        if not check.ok:
            raise PatchDoesNotApply(f"patch {patch.name} does not apply to this Tor tree ({tree.name}): "
                                    f"{_failed_hunks(check.stdout + check.stderr)}\n--- patch output ---\n"
                                    f"{check.tail(15)}")
        _write_log(logdir / "patches.log", run(base, cwd=tree, timeout=STEP_TIMEOUT_S["patches"]), append=True)


def _failed_hunks(output: str) -> str:
    """'src/x.c hunk #2 (at line 600), ...' from patch(1)'s output."""
    failed, current = [], "?"
    for line in output.splitlines():
        m = re.match(r"^(?:checking|patching) file '?([^']+?)'?$", line.strip())
        if m:
            current = m.group(1)
        m = re.match(r"^Hunk #(\d+) FAILED at (\d+)", line.strip())
        if m:
            failed.append(f"{current} hunk #{m.group(1)} (at line {m.group(2)})")
        if "can't find file to patch" in line:
            failed.append("a file it patches does not exist")
        if "Reversed (or previously applied) patch detected" in line:
            failed.append(f"{current} is already patched")
    return ", ".join(failed) or "see the output below"


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Resolved:
    source: Source
    ident: str        # goes into the cache key
    description: str  # for logs and BuildResult.source
    dsc: str = ""     # DEBIAN: the .dsc file name
    dsc_sha256: str = ""


def _resolve(source: Source, cache_dir: Path) -> _Resolved:
    if source.kind is SourceKind.TARBALL:
        digest = hashlib.sha256(Path(source.location).read_bytes()).hexdigest()
        return _Resolved(source, f"tarball:{digest}", f"tarball {source.location}")
    if source.kind is SourceKind.GIT:
        repo = source.location
        tree = run(["git", "-C", repo, "rev-parse", "HEAD^{tree}"]).stdout.strip()
        head = run(["git", "-C", repo, "describe", "--always", "--dirty"], check=False).stdout.strip()
        if head.endswith("-dirty"):
            log.warning("%s has uncommitted changes; building its HEAD commit only", repo)
        return _Resolved(source, f"git:{tree}", f"git {repo} {head}")
    return _resolve_debian(source, cache_dir)


def _resolve_debian(source: Source, cache_dir: Path) -> _Resolved:
    """The .dsc apt would fetch, remembered until apt's package lists change (keeps warm calls fast)."""
    pkg = source.location
    memo = cache_dir / "sources" / "debian" / f"{pkg}.resolved.json"
    lists_mtime = Path("/var/lib/apt/lists").stat().st_mtime_ns
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(memo.read_text())
        if data["lists_mtime"] == lists_mtime:
            return _Resolved(source, f"debian:{data['dsc_sha256']}", f"Debian source {data['dsc']}",
                             data["dsc"], data["dsc_sha256"])
    res = run(["apt-get", "source", "--print-uris", pkg], check=False, timeout=120)
    if not res.ok and "deb-src" in res.tail():
        host.ensure_deb_src()
        res = run(["apt-get", "source", "--print-uris", pkg], check=False, timeout=120)
    if not res.ok:
        raise CommandFailed(list(res.argv), res.returncode, res.tail())
    m = re.search(r"^'\S+' (\S+\.dsc) \d+ SHA256:([0-9a-f]{64})$", res.stdout, re.M)
    if not m:
        raise StepError(f"`apt-get source --print-uris {pkg}` named no .dsc file:\n{res.tail()}")
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"lists_mtime": lists_mtime, "dsc": m.group(1), "dsc_sha256": m.group(2)}))
    return _Resolved(source, f"debian:{m.group(2)}", f"Debian source {m.group(1)}", m.group(1), m.group(2))


def _unpack(resolved: _Resolved, cache_dir: Path, dest: Path, logdir: Path) -> Path:
    """Put a pristine source tree at ``dest`` (which must not exist yet); return it."""
    src = resolved.source
    if src.kind is SourceKind.DEBIAN:
        dl = cache_dir / "sources" / "debian"
        dsc = dl / resolved.dsc
        if not dsc.is_file() or hashlib.sha256(dsc.read_bytes()).hexdigest() != resolved.dsc_sha256:
            host.ensure_deb_src()
            _step_cmd("source", ["apt-get", "source", "--download-only", src.location], dl, logdir)
        _ensure_build_deps(src.location, logdir)
        _step_cmd("source", ["dpkg-source", "-x", str(dsc), str(dest)], dl, logdir)
        return dest
    scratch = dest.parent / "unpack"
    scratch.mkdir()
    if src.kind is SourceKind.TARBALL:
        _step_cmd("source", ["tar", "-xf", src.location, "-C", str(scratch)], scratch, logdir)
    else:
        archive = dest.parent / "git.tar"
        _step_cmd("source", ["git", "-C", src.location, "archive", "-o", str(archive), "HEAD"], scratch, logdir)
        _step_cmd("source", ["tar", "-xf", str(archive), "-C", str(scratch)], scratch, logdir)
        archive.unlink()
    entries = list(scratch.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch
    top.rename(dest)
    shutil.rmtree(scratch, ignore_errors=True)
    if not (dest / "configure").exists():  # a git checkout: generate configure
        _step_cmd("source", ["sh", "autogen.sh"], dest, logdir)
    return dest


def _ensure_build_deps(pkg: str, logdir: Path) -> None:
    """`apt-get build-dep` for the Debian source, only when a simulation says something is missing."""
    sim = run(["apt-get", "build-dep", "-s", pkg], check=False, timeout=120)
    if sim.ok and not re.search(r"^Inst ", sim.stdout, re.M):
        return
    if not host.is_root():
        raise StepError(f"build dependencies of {pkg} are missing; run `sudo apt-get build-dep {pkg}` "
                        "or `kist-harness host setup` as root.")
    _step_cmd("source", ["apt-get", "build-dep", "-y", "-q", pkg], logdir, logdir)


# --------------------------------------------------------------------------- building


def cache_key(resolved_ident: str, series: Series, configure_args: Sequence[str]) -> str:
    """Hash of everything that decides the binary and what was tested on it."""
    material = {"builder": BUILDER_VERSION, "source": resolved_ident, "series": series.digest,
                "configure": [*CONFIGURE_FLAGS, *configure_args], "suites": [*TOR_SUITES, *series.suites]}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def ensure_built(
    source: Source | str = "debian",
    patches_dir: Path | None = None,
    progress: ProgressFn | None = None,
    *,
    cache_dir: Path | None = None,
    configure_args: Sequence[str] = (),
    rebuild: bool = False,
    extra_patches: Path | None = None,
) -> BuildResult:
    """Return a tested tor for ``source`` + the series in ``patches_dir``, building it only if needed.

    ``patches_dir=None`` builds unpatched Tor (same flags and tests), the control arm of an
    overhead comparison. ``extra_patches`` is a second series applied after it
    (:func:`stack_series`). Raises InputError for a bad series or source, PatchDoesNotApply,
    CommandFailed for a failed configure/make/test step (command, exit code, log tail).
    """
    t0 = time.monotonic()
    emit = _Emitter(progress, t0)
    src = Source.parse(source) if isinstance(source, str) else source
    cache = (cache_dir or default_cache_dir()).resolve()
    series = load_series(patches_dir)
    if extra_patches is not None:
        series = stack_series(series, load_series(extra_patches))
    resolved = _resolve(src, cache)
    key = cache_key(resolved.ident, series, configure_args)
    final = cache / "builds" / key
    if not rebuild and (hit := _load(final)) is not None:
        emit("cache", "cached", f"{final}")
        return hit
    (cache / "builds").mkdir(parents=True, exist_ok=True)
    with _lock(cache / "builds" / ".lock", emit):
        if not rebuild and (hit := _load(final)) is not None:  # built by someone else meanwhile
            emit("cache", "cached", f"{final}")
            return hit
        log.info("building %s + %d patches (series %s) -> %s", resolved.description, len(series.patches),
                 series.digest[:12], final)
        with outdir.scratch_dir(f".tmp-{key}-", cache / "builds") as tmp:
            out = _build(tmp, resolved, series, key, configure_args, cache, emit)
            if final.exists():  # --rebuild: replace the old entry only now that the new one passed
                old = final.with_name(f".old-{key}-{os.getpid()}")
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            out.rename(final)
    result = _load(final)
    assert result is not None
    emit("cache", "done", str(final))
    return replace(result, cached=False)


class _Emitter:
    def __init__(self, progress: ProgressFn | None, t0: float) -> None:
        self.progress, self.t0 = progress, t0

    def __call__(self, step: str, status: str, detail: str = "") -> None:
        event = StepEvent(step, status, time.monotonic() - self.t0, detail)
        log.debug("build step %s %s (%.1f s) %s", step, status, event.elapsed_s, detail)
        if self.progress:
            self.progress(event)


@contextlib.contextmanager
def _lock(path: Path, emit: _Emitter) -> Iterator[None]:
    """One build at a time per cache, across processes: two builds would each run make -j2
    on the two shared cores. The lock file stays (unlinking it would let a third process
    lock a new file while a waiter holds the old one)."""
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit("lock", "start", "waiting for another build in this cache to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
            emit("lock", "done")
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(tmp: Path, resolved: _Resolved, series: Series, key: str, configure_args: Sequence[str],
           cache: Path, emit: _Emitter) -> Path:
    logdir = tmp / "out" / "logs"
    logdir.mkdir(parents=True)
    steps: dict[str, float] = {}

    def step(name: str) -> contextlib.AbstractContextManager[None]:
        return _timed(name, steps, emit, logdir, cache / "logs", key)

    with step("source"):
        host.require("build")
        tree = _unpack(resolved, cache, tmp / "src", logdir)
    with step("patches"):
        apply_series(series, tree, logdir)
    with step("configure"):
        _step_cmd("configure", ["./configure", *CONFIGURE_FLAGS, *configure_args], tree, logdir)
    with step("make"):
        # one line per target, so the longest step (minutes) shows where it is
        plan = _step_cmd("make", ["make", "-n", "all", "src/test/test"], tree, logdir, log_output=False)
        meter = MakeProgress(planned_targets(plan.stdout), lambda text: emit("make", "progress", text))
        _step_cmd("make", ["make", f"-j{JOBS}"], tree, logdir, on_line=meter.line)
        _step_cmd("make", ["make", f"-j{JOBS}", "src/test/test"], tree, logdir, on_line=meter.line)
    if series.patches:
        # Tor's whitespace/style check over every C file. (check-changes cannot run on a
        # release tree: it needs scripts/maint/lintChanges.py, which tarballs do not ship.)
        with step("style"):
            _step_cmd("style", ["make", "check-spaces"], tree, logdir)
    suites = []
    with step("tests"):
        for pattern in (*TOR_SUITES, *series.suites):
            suites.append(_run_suite(tree, pattern, logdir))
    bindir = tmp / "out" / "bin"
    bindir.mkdir()
    shutil.copy2(tree / "src" / "app" / "tor", bindir / "tor")
    shutil.copy2(tree / "src" / "tools" / "tor-gencert", bindir / "tor-gencert")
    version_out = run([str(bindir / "tor"), "--version"]).stdout
    m = re.search(r"Tor version (\S+?)\.?(?:\s|$)", version_out)
    meta = {
        "version": m.group(1) if m else version_out.strip(), "series_hash": series.digest, "cache_key": key,
        "source": resolved.description, "patches": [p.name for p in series.patches],
        "configure": [*CONFIGURE_FLAGS, *configure_args], "steps_s": steps,
        "suites": [asdict(s) for s in suites], "builder": BUILDER_VERSION,
    }
    (tmp / "out" / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
    return tmp / "out"


@contextlib.contextmanager
def _timed(name: str, steps: dict[str, float], emit: _Emitter, logdir: Path, keep: Path,
           key: str) -> Iterator[None]:
    emit(name, "start")
    t = time.monotonic()
    try:
        yield
    except BaseException:
        emit(name, "failed")
        log_file = logdir / f"{name}.log"
        if log_file.is_file():  # the temp dir goes away: keep the full log outside the build cache
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log_file, keep / f"{key}-{name}.log")
            log.error("full log of the failed step: %s", keep / f"{key}-{name}.log")
        raise
    steps[name] = round(time.monotonic() - t, 2)
    emit(name, "done", f"{steps[name]:.1f} s")


def _write_log(path: Path, res: Result, append: bool = False) -> None:
    with path.open("a" if append else "w") as fh:
        fh.write(f"$ {' '.join(res.argv)}  # exit {res.returncode}, {res.duration_s:.1f} s\n")
        fh.write(res.stdout)
        fh.write(res.stderr)


def _step_cmd(step: str, argv: list[str], cwd: Path, logdir: Path, *,
              on_line: Callable[[str], None] | None = None, log_output: bool = True) -> Result:
    """Run one command of a step; on failure raise with the command, exit code and log tail."""
    env = {**os.environ, "MAKEFLAGS": "", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    res = run(argv, cwd=cwd, env=env, check=False, timeout=STEP_TIMEOUT_S[step], on_line=on_line)
    if log_output or not res.ok:
        _write_log(logdir / f"{step}.log", res, append=True)
    if not res.ok:
        raise CommandFailed(argv, res.returncode, res.tail(), where=f"build step {step}")
    return res


_SUITE_OK = re.compile(r"^(\d+) tests ok\.\s+\((\d+) skipped\)", re.M)


def _run_suite(tree: Path, pattern: str, logdir: Path) -> SuiteResult:
    res = _step_cmd("tests", ["./src/test/test", pattern], tree, logdir)
    m = _SUITE_OK.search(res.stdout)
    if not m or int(m.group(1)) == 0:
        raise CommandFailed(["./src/test/test", pattern], res.returncode,
                            f"ran no tests (is the pattern right?)\n{res.tail()}", where="build step tests")
    return SuiteResult(pattern, int(m.group(1)), int(m.group(2)), round(res.duration_s, 2))


def _load(entry: Path) -> BuildResult | None:
    try:
        meta = json.loads((entry / "build.json").read_text())
    except (OSError, ValueError):
        return None
    tor, gencert = entry / "bin" / "tor", entry / "bin" / "tor-gencert"
    if not (os.access(tor, os.X_OK) and os.access(gencert, os.X_OK)):
        return None
    return BuildResult(tor=tor, tor_gencert=gencert, version=meta["version"], series_hash=meta["series_hash"],
                       cache_key=meta["cache_key"], source=meta["source"],
                       suites=tuple(SuiteResult(**s) for s in meta["suites"]), cached=True)


__all__ = ["BuildResult", "PatchDoesNotApply", "Series", "Source", "SourceKind", "StepEvent", "SuiteResult",
           "cache_key", "default_cache_dir", "default_patches_dir", "ensure_built", "load_series", "stack_series"]
