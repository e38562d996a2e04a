"""``--policy module:Class``: a researcher's scheduler policy, loaded and checked before anything runs.

The differential replays each recorded run through a :class:`kist_reference.scheduler.Policy`;
by default the faithful one for the run's scheduler (``kist_reference.scheduler.POLICIES``).
A researcher who changed Tor's scheduler (``kist-harness run --patches DIR``) names their own
subclass instead, and it judges the runs of the scheduler it derives from: a ``KistPolicy``
subclass the KIST runs, a ``KistLitePolicy`` subclass the KISTLite runs, a ``VanillaPolicy``
subclass the Vanilla runs; the other arms keep the faithful model.

Everything is checked here, once, before the build or the network starts: the module imports,
the class exists, derives from one of those three and can be constructed with no arguments
(the differential makes one per run, as it does the faithful policies). The spec, the file and
its hash go into the store (:class:`JudgeRecord`), so ``kist-harness report`` re-judges the
store with the same policy.

``module`` is a dotted name importable from ``sys.path`` (``PYTHONPATH``), or the path of a
``.py`` file (``docs/examples/kist-sndbuf-limit/policy.py:SndbufLimitKist``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.errors import InputError
from harness.store.records import Record
from harness.store.typed import JudgeRecord
from kist_reference.scheduler import POLICIES, KistLitePolicy, KistPolicy, Policy, VanillaPolicy

FAITHFUL = "faithful"  # `report --policy faithful`: judge with the faithful model, whatever the store says

# Most derived first: a KistLitePolicy is also a KistPolicy.
_ARMS: tuple[tuple[type[Policy], str], ...] = ((KistLitePolicy, "KISTLite"), (KistPolicy, "KIST"),
                                                (VanillaPolicy, "Vanilla"))

_HOW = ("Give --policy as module:Class, where module is a dotted name importable from PYTHONPATH "
        "(mypolicies.sndbuf:SndbufLimitKist) or the path of a .py file "
        "(docs/examples/kist-sndbuf-limit/policy.py:SndbufLimitKist), and Class a subclass of "
        "kist_reference.scheduler.KistPolicy (or KistLitePolicy, VanillaPolicy); see docs/byo-scheduler.md.")


@dataclass(frozen=True)
class PolicySpec:
    """A loaded, checked policy class and where it came from."""

    spec: str               # as given on the command line
    cls: type[Policy]
    judges: str             # the scheduler whose runs it replays: KIST, KISTLite or Vanilla
    source: str             # the file the class is defined in ("" if Python cannot say)
    sha256: str             # of that file ("" likewise): the store says exactly what judged it

    @property
    def qualname(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def policies(self) -> Mapping[str, Callable[[], Policy]]:
        """For :func:`harness.checks.differential.check`: scheduler -> a new policy per run."""
        return {self.judges: self.cls}

    def describe(self) -> str:
        where = f", {self.source} sha256 {self.sha256[:12]}" if self.source else ""
        return f"{self.spec} ({self.qualname}, judges the {self.judges} runs{where})"

    @property
    def canonical(self) -> str:
        """The spec as the store keeps it: a file's path made absolute, so ``report`` finds it from anywhere."""
        mod_name, _, cls_name = self.spec.rpartition(":")
        if _is_path(mod_name):
            return f"{Path(mod_name).expanduser().resolve()}:{cls_name}"
        return self.spec

    def record(self, ts: float, extra_patches: tuple[str, ...] = ()) -> Record:
        return JudgeRecord(self.canonical, self.qualname, self.judges, self.source, self.sha256,
                           extra_patches).record(ts)


def load(spec: str, flag: str = "--policy") -> PolicySpec:
    """Import, check and try-construct the policy ``spec`` names; InputError says what is wrong and what to do."""
    mod_name, sep, cls_name = spec.rpartition(":")
    if not sep or not mod_name or not cls_name.isidentifier():
        raise InputError(f"{flag} {spec!r}: not of the form module:Class. {_HOW}")
    module = _import(mod_name, spec, flag)
    where = getattr(module, "__file__", None) or mod_name
    obj = getattr(module, cls_name, None)
    if obj is None:
        found = sorted(n for n, v in vars(module).items()
                       if inspect.isclass(v) and issubclass(v, Policy) and v.__module__ == module.__name__)
        hint = f"the Policy subclasses it defines: {', '.join(found)}" if found else "it defines no Policy subclass"
        raise InputError(f"{flag} {spec!r}: {where} has no {cls_name} ({hint}). {_HOW}")
    if not inspect.isclass(obj) or not issubclass(obj, Policy):
        what = f"a {type(obj).__name__}" if not inspect.isclass(obj) else f"a class deriving from {_bases(obj)}"
        raise InputError(f"{flag} {spec!r}: {cls_name} in {where} is {what}, not a subclass of "
                         f"kist_reference.scheduler.KistPolicy (or Policy). {_HOW}")
    judges = next((name for base, name in _ARMS if issubclass(obj, base)), None)
    if judges is None:
        raise InputError(f"{flag} {spec!r}: {cls_name} derives from Policy but from none of KistPolicy, "
                         "KistLitePolicy, VanillaPolicy, so it is not known which runs it judges (a bare Policy "
                         "has no run()); derive it from the scheduler it changes, e.g. "
                         f"`class {cls_name}(KistPolicy)`. {_HOW}")
    if obj in POLICIES.values():
        raise InputError(f"{flag} {spec!r}: that is the faithful {judges} policy itself; the differential uses it "
                         "without --policy. Name your subclass of it instead.")
    try:
        obj()
    except Exception as exc:  # noqa: BLE001 - any failure of the researcher's constructor is their input's fault
        raise InputError(f"{flag} {spec!r}: {cls_name}() failed: {type(exc).__name__}: {exc}. The differential "
                         "constructs the policy with no arguments, once per replayed run: give every "
                         "__init__ parameter a default (or read settings from class attributes).") from exc
    source = inspect.getsourcefile(obj) or ""
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source and Path(source).is_file() else ""
    return PolicySpec(spec, obj, judges, source, digest)


def _is_path(mod_name: str) -> bool:
    return mod_name.endswith(".py") or "/" in mod_name


def _import(mod_name: str, spec: str, flag: str) -> ModuleType:
    try:
        if _is_path(mod_name):
            return _import_file(Path(mod_name), spec, flag)
        return importlib.import_module(mod_name)
    except InputError:
        raise
    except ModuleNotFoundError as exc:
        raise InputError(f"{flag} {spec!r}: module {mod_name} cannot be imported ({exc}); put the directory that "
                         f"holds it on PYTHONPATH, or give the file's path instead. {_HOW}") from exc
    except SyntaxError as exc:
        raise InputError(f"{flag} {spec!r}: {exc.filename}:{exc.lineno}: syntax error ({exc.msg}); fix the "
                         "file and run again.") from exc
    except Exception as exc:  # noqa: BLE001 - the module's own top-level code failed
        tb = exc.__traceback__
        frames = [f for f in _frames(tb) if not f[0].startswith(("<frozen", str(Path(importlib.__file__).parent)))]
        at = f" at {frames[-1][0]}:{frames[-1][1]}" if frames else ""
        raise InputError(f"{flag} {spec!r}: importing {mod_name} failed{at}: {type(exc).__name__}: {exc}; "
                         "fix the module (it runs when imported) and run again.") from exc


def _import_file(path: Path, spec: str, flag: str) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise InputError(f"{flag} {spec!r}: {path} is not a file. {_HOW}")
    name = f"kist_harness_policy_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise InputError(f"{flag} {spec!r}: Python cannot load {path} as a module (is it a .py file?).")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _frames(tb: Any) -> list[tuple[str, int]]:
    out = []
    while tb is not None:
        out.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return out


def _bases(cls: type) -> str:
    return ", ".join(b.__qualname__ for b in cls.__mro__[1:-1]) or "object"
