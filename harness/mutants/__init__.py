"""Mutants of Tor's scheduler as data: exact search/replace edits of its C source.

``catalog.toml`` (next to this file) holds the historical KIST bugs re-introduced into
today's code and synthetic mutants. Each edit's ``old`` text must occur exactly once in
its file: an edit is checked against the tree before anything is written, so a mutant
that no longer fits the source (a new Tor release moved the code) fails with a message
naming the catalogue, the mutant and the file instead of building something else.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.errors import InputError

KINDS = ("historical", "synthetic")
_MUTANT_KEYS = {"name", "kind", "doc", "adapted", "kill", "edit"}
_EDIT_KEYS = {"file", "old", "new"}


class MutantDoesNotApply(InputError):
    """An edit's ``old`` text is missing (or not unique) in the tree it is applied to."""


@dataclass(frozen=True)
class Edit:
    file: str  # relative to the Tor source root
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # historical | synthetic
    doc: str
    edits: tuple[Edit, ...]
    adapted: str = ""  # historical: how the original bug was put back into today's code
    kill: str = ""     # what the differential must see to catch it

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.file for e in self.edits))


def catalog_path() -> Path:
    return Path(str(resources.files("harness") / "mutants" / "catalog.toml"))


def load(path: Path | None = None) -> tuple[Mutant, ...]:
    """Read and check a catalogue; every problem names the file, the mutant and the field."""
    path = path or catalog_path()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"mutant catalogue {path}: cannot read it ({exc.strerror}).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"mutant catalogue {path}: not valid TOML ({exc}); fix the file.") from exc
    entries = data.get("mutant")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"mutant catalogue {path}: no [[mutant]] tables; each mutant is a [[mutant]] table "
                         "with name, kind, doc and one or more [[mutant.edit]] tables (file, old, new).")
    out: list[Mutant] = []
    seen: set[str] = set()
    for i, m in enumerate(entries, 1):
        where = f"mutant catalogue {path}: mutant #{i}"
        if not isinstance(m, dict):
            raise InputError(f"{where}: expected a table")
        name = m.get("name")
        if isinstance(name, str) and name:
            where = f"mutant catalogue {path}: mutant {name!r}"
        unknown = sorted(set(m) - _MUTANT_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(sorted(_MUTANT_KEYS))}.")
        for key in ("name", "kind", "doc"):
            if not isinstance(m.get(key), str) or not m[key].strip():
                raise InputError(f"{where}: field {key!r} is missing or empty (a non-empty string).")
        if not all(c.isalnum() or c in "-_" for c in m["name"]):
            raise InputError(f"{where}: name may hold letters, digits, '-' and '_' only (it names a directory).")
        if m["name"] in seen:
            raise InputError(f"{where}: the name is used twice; names must be unique.")
        seen.add(m["name"])
        if m["kind"] not in KINDS:
            raise InputError(f"{where}: kind {m['kind']!r}: expected one of {', '.join(KINDS)}.")
        if m["kind"] == "historical" and not str(m.get("adapted", "")).strip():
            raise InputError(f"{where}: a historical mutant says how it was adapted to today's code "
                             "(field 'adapted').")
        edits = m.get("edit")
        if not isinstance(edits, list) or not edits:
            raise InputError(f"{where}: no [[mutant.edit]] table (file, old, new).")
        parsed = []
        for j, e in enumerate(edits, 1):
            ew = f"{where}, edit #{j}"
            if not isinstance(e, dict) or set(e) != _EDIT_KEYS:
                got = ", ".join(sorted(e)) if isinstance(e, dict) else type(e).__name__
                raise InputError(f"{ew}: expected exactly the fields file, old, new (got {got}).")
            if not all(isinstance(e[k], str) for k in _EDIT_KEYS) or not e["old"].strip():
                raise InputError(f"{ew}: file, old and new are strings, old not empty.")
            if e["old"] == e["new"]:
                raise InputError(f"{ew}: old and new are the same text: the edit changes nothing.")
            if e["file"].startswith("/") or ".." in Path(e["file"]).parts:
                raise InputError(f"{ew}: file {e['file']!r} must be relative to the Tor source root.")
            parsed.append(Edit(e["file"], e["old"], e["new"]))
        out.append(Mutant(m["name"], m["kind"], m["doc"].strip(), tuple(parsed),
                          str(m.get("adapted", "")).strip(), str(m.get("kill", "")).strip()))
    return tuple(out)


def select(mutants: tuple[Mutant, ...], names: list[str] | None) -> tuple[Mutant, ...]:
    """The named mutants (in catalogue order), or all; an unknown name lists the known ones."""
    if not names:
        return mutants
    known = {m.name for m in mutants}
    missing = [n for n in names if n not in known]
    if missing:
        raise InputError(f"no mutant named {', '.join(missing)}; the catalogue has: "
                         f"{', '.join(sorted(known))}.")
    return tuple(m for m in mutants if m.name in names)


def check(mutant: Mutant, tree: Path) -> dict[str, str]:
    """The mutated text of every file the mutant edits; raises MutantDoesNotApply, writes nothing."""
    texts: dict[str, str] = {}
    for i, e in enumerate(mutant.edits, 1):
        target = tree / e.file
        if e.file not in texts:
            try:
                texts[e.file] = target.read_text()
            except OSError as exc:
                raise MutantDoesNotApply(
                    f"mutant {mutant.name} edit #{i}: cannot read {e.file} in {tree} ({exc.strerror}); "
                    "is this a Tor source tree, and does the file still exist in this release?") from exc
        count = texts[e.file].count(e.old)
        if count != 1:
            first = e.old.strip().splitlines()[0].strip()
            why = "does not occur" if count == 0 else f"occurs {count} times (it must be unique)"
            raise MutantDoesNotApply(
                f"mutant {mutant.name} edit #{i} does not apply: its old text (starting {first!r}) {why} in "
                f"{e.file}. The source changed since the mutant was written: update the edit in "
                f"{catalog_path().name} to today's code (or drop the mutant).")
        texts[e.file] = texts[e.file].replace(e.old, e.new, 1)
    return texts


def apply(mutant: Mutant, tree: Path) -> None:
    """Apply every edit to the tree (all checked first: a mutant applies fully or not at all)."""
    for rel, text in check(mutant, tree).items():
        (tree / rel).write_text(text)


__all__ = ["Edit", "Mutant", "MutantDoesNotApply", "apply", "catalog_path", "check", "load", "select"]
