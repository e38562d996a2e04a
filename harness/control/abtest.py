"""Interleaved A/B experiments: which arm is on when, switching it with SETCONF, undoing it.

Time is cut into blocks of ``len(arms)`` periods; each block runs every arm once, in an
order drawn from a seeded RNG (the seed is logged and stored, so a schedule can be
repeated). Interleaving short periods cancels time-of-day effects that a day-vs-day
comparison (the paper's live experiment) cannot separate from the scheduler's.

The relay's settings before the first switch are read and stored; ``restore`` puts them
back (the collector calls it on exit, failure and signal).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError, StepError

log = logging.getLogger(__name__)

SCHEDULERS = ("KIST", "KISTLite", "Vanilla")


def _check_interval(v: str) -> None:
    if not v.isdigit() or int(v) > 100:
        raise ValueError("an integer 0..100 (ms; 0 = use the consensus)")


def _check_factor(v: str) -> None:
    if float(v) < 0:
        raise ValueError("a number >= 0")


def _check_scheduler(v: str) -> None:
    if v not in SCHEDULERS:
        raise ValueError(f"one of {', '.join(SCHEDULERS)}")


# Only these options may be switched: an A/B arm must not be a way to SETCONF anything.
SWITCHABLE = {"Schedulers": _check_scheduler, "KISTSchedRunInterval": _check_interval,
              "KISTSockBufSizeFactor": _check_factor}


@dataclass(frozen=True)
class Arm:
    """One side of the experiment: a label and the settings it applies."""

    name: str
    settings: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return f"{self.name} ({' '.join(f'{k}={v}' for k, v in self.settings)})"


def parse_arms(text: str) -> tuple[Arm, ...]:
    """``KIST,Vanilla`` or ``NAME:Option=value;Option=value,...`` → arms (InputError if bad)."""
    arms: list[Arm] = []
    for spec in (s.strip() for s in text.split(",")):
        if not spec:
            continue
        name, sep, opts = spec.partition(":")
        if not sep:
            if name not in SCHEDULERS:
                raise InputError(f"--ab arm {name!r}: a bare arm is a scheduler ({', '.join(SCHEDULERS)}); "
                                 "for other settings write NAME:Option=value;Option=value.")
            arms.append(Arm(name, (("Schedulers", name),)))
            continue
        settings = []
        for item in (o.strip() for o in opts.split(";") if o.strip()):
            key, eq, value = item.partition("=")
            if not eq or key not in SWITCHABLE:
                raise InputError(f"--ab arm {name!r}: {item!r} must be Option=value with Option one of "
                                 f"{', '.join(SWITCHABLE)}.")
            try:
                SWITCHABLE[key](value)
            except ValueError as exc:
                raise InputError(f"--ab arm {name!r}: {key}={value!r} must be {exc}.") from None
            settings.append((key, value))
        if not settings:
            raise InputError(f"--ab arm {name!r} sets nothing: give NAME:Option=value.")
        arms.append(Arm(name, tuple(settings)))
    if len(arms) < 2 or len({a.name for a in arms}) != len(arms):
        raise InputError(f"--ab {text!r}: give at least two arms with distinct names, e.g. KIST,Vanilla.")
    return tuple(arms)


@dataclass(frozen=True)
class Slot:
    """Which arm is on, and where in the schedule that is."""

    arm: Arm
    block: int
    index: int      # position within the block
    start: float    # seconds since the experiment began


class Schedule:
    """Blocks of every arm once, order shuffled per block by a seeded RNG."""

    def __init__(self, arms: tuple[Arm, ...], period_s: float, seed: int) -> None:
        if period_s <= 0:
            raise InputError("--period must be positive, e.g. 10m.")
        self.arms, self.period_s, self.seed = arms, period_s, seed
        self._rng = random.Random(seed)
        self._blocks: list[list[Arm]] = []

    def order(self, block: int) -> list[Arm]:
        while len(self._blocks) <= block:
            self._blocks.append(self._rng.sample(list(self.arms), len(self.arms)))
        return self._blocks[block]

    def slot_at(self, elapsed: float) -> Slot:
        n = int(max(0.0, elapsed) // self.period_s)
        block, index = divmod(n, len(self.arms))
        return Slot(self.order(block)[index], block, index, n * self.period_s)


class Switcher:
    """Applies arms to one relay with SETCONF and restores what was there before."""

    def __init__(self, arms: tuple[Arm, ...]) -> None:
        self.options = tuple(dict.fromkeys(k for a in arms for k, _ in a.settings))
        self.original: dict[str, str] | None = None

    def remember(self, controller: Any) -> Mapping[str, str]:
        """Read the relay's current values of every switched option (once)."""
        if self.original is None:
            values = controller.get_conf_map(list(self.options))
            self.original = {k: ",".join(values.get(k) or []) for k in self.options}
            log.info("relay settings before the experiment: %s", self.original)
        return self.original

    def apply(self, controller: Any, arm: Arm) -> None:
        self._setconf(controller, list(arm.settings), f"arm {arm.name}")

    def restore(self, controller: Any) -> None:
        if self.original is not None:
            self._setconf(controller, list(self.original.items()), "the original settings")
            log.info("restored the relay's settings: %s", self.original)

    @staticmethod
    def _setconf(controller: Any, settings: list[tuple[str, str]], what: str) -> None:
        import stem

        try:
            controller.set_options(settings)
        except stem.ControllerError as exc:
            raise StepError(f"SETCONF for {what} failed: {exc}") from exc
