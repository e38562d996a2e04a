"""Output directories the harness may clear: only ones it made, and only what it put there.

``kist-harness run --out DIR`` and ``kist-harness report --out DIR`` replace what an
earlier run wrote. Pointing ``--out`` at a folder of someone's results must never delete
them, so a directory the harness fills carries a marker file listing the entries the
harness wrote at its top level. A later run may remove exactly those entries; it refuses
a non-empty directory without the marker, and one holding anything the marker does not
list, before anything on disk changes.

A run that is SIGKILLed before it updates the marker leaves entries the marker does not
name; the next run then refuses with the same message (safe, if less convenient): the
user deletes the directory or picks another one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError

MARKER = ".kist-harness-output"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnedDir:
    """A directory the harness made; ``record()`` lists what it wrote there (call it again at the end)."""

    path: Path
    made_by: str

    def record(self) -> None:
        entries = sorted(p.name for p in self.path.iterdir() if p.name != MARKER)
        tmp = self.path / f"{MARKER}.tmp"
        tmp.write_text(json.dumps({"made_by": self.made_by, "entries": entries}, indent=1) + "\n")
        os.replace(tmp, self.path / MARKER)


def _listed(path: Path) -> set[str] | None:
    """The entries the marker lists, or None when there is no (readable) marker."""
    try:
        data = json.loads((path / MARKER).read_text())
        return {str(e) for e in data["entries"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check(path: Path, flag: str = "--out") -> None:
    """Raise InputError unless ``path`` is absent, empty, or holds only what the harness wrote there."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise InputError(f"{flag} {path} exists and is not a directory; kist-harness writes a directory "
                         f"there. Give {flag} a new or empty directory, or one an earlier kist-harness run made.")
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return
    listed = _listed(path)
    if listed is None:
        raise InputError(f"{flag} {path} is a non-empty directory that kist-harness did not make (it has no "
                         f"{MARKER} file), so nothing in it is deleted or overwritten. Give {flag} a new or "
                         "empty directory, or move its contents away yourself.")
    foreign = sorted(entries - listed - {MARKER, f"{MARKER}.tmp"})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(f"{flag} {path} was made by kist-harness, but it now also holds {shown}, which "
                         "kist-harness did not write (or a run was killed before it could list them), so "
                         f"nothing in it is deleted. Move those away, or give {flag} another directory.")


def claim(path: Path, made_by: str, flag: str = "--out") -> OwnedDir:
    """Check ``path`` (as :func:`check`), then empty what an earlier run wrote, or create it."""
    check(path, flag)
    if path.is_dir():
        for name in sorted(_listed(path) or ()):
            entry = path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    owned = OwnedDir(path, made_by)
    owned.record()
    return owned


def replace_dir(staged: Path, dest: Path, made_by: str, flag: str = "--out") -> None:
    """Put a fully written ``staged`` directory at ``dest``, replacing only an earlier harness output.

    ``staged`` gets the marker first, so the replacement is itself replaceable later.
    """
    check(dest, flag)
    OwnedDir(staged, made_by).record()
    if dest.exists():
        shutil.rmtree(dest)
    staged.rename(dest)


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: Path) -> Iterator[Path]:
    """A temporary directory under ``parent``, removed afterwards even if removal needs retrying.

    Unlike ``tempfile.TemporaryDirectory`` a failed removal never replaces the exception that
    ended the block (a Ctrl-C during a build must stop the build, not report an OSError);
    removal is retried for a few seconds, since processes killed a moment ago may still
    release files there, and a directory that still cannot go is named in a warning.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        _remove_patiently(path)


def _remove_patiently(path: Path, attempts: int = 20, pause_s: float = 0.25) -> None:
    for _ in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(pause_s)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove the scratch directory %s; delete it by hand", path)
