"""Run records: the versioned contract between the Tor patch and the model.

The single definition is ``docs/trace-format.md``; this module implements it: typed,
immutable records, the control-port wire form (``650 KIST_RUN k=v ...`` on one line) and
the JSON-lines form, both exact (doubles travel as C99 hex floats).

Steps are NamedTuples rather than dataclasses: a busy relay emits hundreds of thousands
of them per minute and replay walks them in its hot loop, where tuple access is fastest.

``parse_wire`` is the collector's bottleneck, so it has two paths to the same record: a
fast one for well-formed lines (one branch per step op, steps cached by their text,
validation inline) and the checked one, field by field, which takes over whenever the
fast one meets anything unusual and names the problem. tests/unit/trace holds them equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias, TypeVar

from kist_reference.ewma import TICK_LEN_MAX, TICK_LEN_MIN

FORMAT_VERSION = 1
EVENT_NAME = "KIST_RUN"
SCHEDULERS = ("KIST", "KISTLite", "Vanilla")

KIST_OUTCOMES = ("1", "2", "3", "4", "closed", "empty")
VANILLA_OUTCOMES = ("short", "readd", "wtw", "wfc", "idle", "none")
EXTERNAL_CALLS = ("hw", "ww", "dw", "rel")
SCHED_STATES = ("I", "C", "W", "P")  # IDLE, WAITING_FOR_CELLS, WAITING_TO_WRITE, PENDING


class TraceError(ValueError):
    """A record that cannot be read; the message names the place, the field and the fix."""

    def __init__(self, problem: str, *, source: str = "", line: int | None = None, field: str = "") -> None:
        where = source or "<record>"
        if line is not None:
            where += f":{line}"
        what = f" field {field}:" if field else ""
        super().__init__(f"{where}:{what} {problem}")
        self.problem = problem
        self.source = source
        self.line = line
        self.field = field


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class HeapEntry:
    """One circuit in a mux's EWMA heap, as Tor's array holds it."""

    circ: int
    count: float
    tick: int
    qlen: int


@dataclass(frozen=True, slots=True)
class MuxSnapshot:
    n_cells: int
    destroy_q: int
    last_destroy: bool
    recal: int
    heap: tuple[HeapEntry, ...]


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    chan: int
    open: bool
    wide: bool
    outbuf: int
    limit: int | None
    written: int | None
    state: str
    mux: MuxSnapshot


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """TCP_INFO + SIOCOUTQNSD as read for one socket.

    ``extra``: further values a variant of Tor's limit formula read from the socket and its
    patch appended to the entry (``T/cwnd/unacked/mss/notsent/x1/x2...``), in its own
    order; Tor's KIST reads none and the faithful model ignores them. A subclassed
    ``KistPolicy.socket_limit`` reads them (docs/byo-scheduler.md).
    """

    cwnd: int
    unacked: int
    mss: int
    notsent: int
    extra: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SockError:
    """getsockopt/ioctl failed with this errno."""

    errno: int


@dataclass(frozen=True, slots=True)
class Fallback:
    """The syscalls were skipped (KISTLite, or no kernel support already known)."""


SockRead: TypeAlias = TcpInfo | SockError | Fallback


@dataclass(frozen=True, slots=True)
class Params:
    interval_ms: int
    sock_buf_factor: float
    no_kernel_support: bool
    orconn_highwater: int
    ewma_scale_factor: float
    ewma_tick_len: int


class Pop(NamedTuple):
    chan: int


class ShouldWrite(NamedTuple):
    prev: int
    outbuf: int
    write: bool


class KernelWrite(NamedTuple):
    chan: int
    before: int
    after: int


class CanWrite(NamedTuple):
    chan: int
    can: bool


class Writeable(NamedTuple):
    chan: int
    cells: int


class CellFlush(NamedTuple):
    chan: int
    circ: int
    tick: int
    msec: int


class DestroyFlush(NamedTuple):
    chan: int


class StaleQueue(NamedTuple):
    chan: int
    circ: int


class WriteFailed(NamedTuple):
    chan: int
    circ: int


class LeftOpen(NamedTuple):
    chan: int


class Snapshot(NamedTuple):
    snap: int


class External(NamedTuple):
    chan: int
    call: str


class Outcome(NamedTuple):
    chan: int
    outcome: str


class DestroyFailed(NamedTuple):
    chan: int


class EndWrite(NamedTuple):
    """An end-of-run kernel write (HT_FOREACH_FN over the run's outbuf table)."""

    chan: int
    before: int
    after: int


Step: TypeAlias = (
    Pop | ShouldWrite | KernelWrite | CanWrite | Writeable | CellFlush | DestroyFlush
    | StaleQueue | WriteFailed | LeftOpen | Snapshot | External | Outcome | DestroyFailed | EndWrite
)

# op letter <-> step type, and which fields are booleans / strings on the wire
STEP_TYPES: dict[str, type[Any]] = {
    "p": Pop, "s": ShouldWrite, "w": KernelWrite, "c": CanWrite, "v": Writeable,
    "f": CellFlush, "d": DestroyFlush, "e": StaleQueue, "y": WriteFailed, "l": LeftOpen,
    "n": Snapshot, "x": External, "k": Outcome, "z": DestroyFailed, "W": EndWrite,
}
STEP_OPS: dict[type[Any], str] = {cls: op for op, cls in STEP_TYPES.items()}
_STEP_ARITY = {op: len(cls._fields) for op, cls in STEP_TYPES.items()}
_BOOL_STEPS = {"s": 2, "c": 1}  # op -> index of its boolean field
_STR_STEPS = {"x": 1, "k": 1}  # op -> index of its string field
# ops whose fields are all ints in JSON (booleans travel as 0/1 but must become bool)
_INT_STEPS = {op: cls for op, cls in STEP_TYPES.items() if op not in _BOOL_STEPS and op not in _STR_STEPS}


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Everything one scheduler run read and decided (docs/trace-format.md)."""

    version: int
    run: int
    sched: str
    t0_ns: int
    ti_ns: int
    t1_ns: int
    params: Params
    n_pending: int
    snapshots: tuple[ChannelSnapshot, ...]
    sock: tuple[SockRead, ...]
    steps: tuple[Step, ...]
    readd: tuple[int, ...]
    final: tuple[int, ...]
    diff_ms: int
    next_us: int

    @property
    def end_writes(self) -> tuple[EndWrite, ...]:
        """The end-of-run kernel writes, in Tor's order."""
        return tuple(s for s in self.steps if type(s) is EndWrite)

    @property
    def pending(self) -> tuple[int, ...]:
        """channels_pending at run start, in array order."""
        return tuple(s.chan for s in self.snapshots[: self.n_pending])

    def validate(self) -> RunRecord:
        """Check the cross-field rules the parsers cannot see one field at a time."""
        if self.version != FORMAT_VERSION:
            raise TraceError(f"format version {self.version} is not supported (this reader knows "
                             f"{FORMAT_VERSION}); upgrade kist-harness or re-export the trace", field="V")
        if self.sched not in SCHEDULERS:
            raise TraceError(f"unknown scheduler {self.sched!r}; expected one of {', '.join(SCHEDULERS)}",
                             field="SCHED")
        if not 0 <= self.n_pending <= len(self.snapshots):
            raise TraceError(f"NPEND={self.n_pending} but only {len(self.snapshots)} snapshots", field="NPEND")
        p = self.params
        if not TICK_LEN_MIN <= p.ewma_tick_len <= TICK_LEN_MAX:
            # Tor clamps CircuitPriorityTickSecs to this range (circuitmux_ewma.c:48-50, 622);
            # replay divides by it
            raise TraceError(f"TICKLEN={p.ewma_tick_len} is outside Tor's range {TICK_LEN_MIN}-{TICK_LEN_MAX} "
                             "(seconds per EWMA tick); the record is damaged or not from Tor", field="TICKLEN")
        if not 0.0 < p.ewma_scale_factor <= 1.0:
            # exp(log(1/2) / halflife) with halflife > 0 (circuitmux_ewma.c:599-625): replay
            # raises it to fractional powers, so anything else has no meaning
            raise TraceError(f"EWMAF={_hexf(p.ewma_scale_factor)} ({p.ewma_scale_factor!r}) is not an EWMA scale factor in (0, 1]; the record "
                             "is damaged or not from Tor", field="EWMAF")
        if self.sched != "Vanilla" and len(self.sock) != self.n_pending:
            raise TraceError(f"{len(self.sock)} socket reads for {self.n_pending} pending channels", field="SOCK")
        outcomes = VANILLA_OUTCOMES if self.sched == "Vanilla" else KIST_OUTCOMES
        for i, step in enumerate(self.steps):
            if isinstance(step, Outcome) and step.outcome not in outcomes:
                raise TraceError(f"step {i}: outcome {step.outcome!r} is not one of {', '.join(outcomes)}",
                                 field="STEPS")
            if isinstance(step, External) and step.call not in EXTERNAL_CALLS:
                raise TraceError(f"step {i}: call {step.call!r} is not one of {', '.join(EXTERNAL_CALLS)}",
                                 field="STEPS")
            if isinstance(step, Snapshot) and not 0 <= step.snap < len(self.snapshots):
                raise TraceError(f"step {i}: snapshot {step.snap} does not exist", field="STEPS")
        for i, snap in enumerate(self.snapshots):
            if snap.state not in SCHED_STATES:
                raise TraceError(f"snapshot {i}: state {snap.state!r} is not one of {', '.join(SCHED_STATES)}",
                                 field="CHANS")
        return self


# --------------------------------------------------------------------------- wire form


def _hexf(x: float) -> str:
    """C99 ``%a`` spelling (``0x1.8p+1``, not Python's ``0x1.8000000000000p+1``)."""
    text = x.hex()
    mant, p, exp = text.partition("p")
    if p and "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return mant + p + exp


def _int(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TraceError(f"{text!r} is not an integer", field=field) from None


def _flt(text: str, field: str) -> float:
    try:
        return float.fromhex(text)
    except (ValueError, OverflowError):  # 0x1p+99999 overflows
        raise TraceError(f"{text!r} is not a hex float (C99 %a, e.g. 0x1.8p+1)", field=field) from None


def _opt(text: str, field: str) -> int | None:
    return None if text == "-" else _int(text, field)


def _flag(text: str, field: str) -> bool:
    if text not in ("0", "1"):
        raise TraceError(f"{text!r} is not 0 or 1", field=field)
    return text == "1"


def _items(value: str) -> list[str]:
    return value.split(",") if value else []


def _fields(item: str, n: int, field: str) -> list[str]:
    parts = item.split(":")
    if len(parts) != n:
        raise TraceError(f"element {item!r} has {len(parts)} parts, expected {n}", field=field)
    return parts


_HEADER_KEYS = ("V", "RUN", "SCHED", "T0", "TI", "T1", "IVAL", "FACTOR", "NOKS", "HW", "EWMAF",
                "TICKLEN", "NPEND", "CHANS", "MUX", "HEAP", "SOCK", "STEPS", "READD", "FINAL",
                "DIFF", "NEXT")


_HEADER_SET = frozenset(_HEADER_KEYS)


def _keywords(line: str) -> dict[str, str]:
    text = line.strip()
    if text.startswith("650"):
        text = text[3:].lstrip(" -")
    if text.startswith(EVENT_NAME + " "):
        text = text[len(EVENT_NAME):]
    tokens = text.split()
    try:  # every token split at its first "=" in one C-level pass
        kw = dict(map(str.split, tokens, repeat("="), repeat(1)))
    except ValueError:  # a token without "=": name it
        token = next(t for t in tokens if "=" not in t)
        raise TraceError(f"token {token!r} is not key=value", field="") from None
    if "EW" in kw:
        raise TraceError("EW is not part of format version 1 any more: end-of-run kernel writes are W steps "
                         "at the end of STEPS (docs/trace-format.md, 'End of run')", field="EW")
    if not kw.keys() >= _HEADER_SET:
        missing = [k for k in _HEADER_KEYS if k not in kw]
        raise TraceError(f"missing key(s) {', '.join(missing)}; is this a {EVENT_NAME} line of format "
                         f"version {FORMAT_VERSION}?", field=missing[0])
    return kw


def _parse_step(item: str) -> Step:
    op, _, rest = item.partition(":")
    cls = STEP_TYPES.get(op)
    if cls is None:
        raise TraceError(f"unknown step op {op!r} in {item!r}", field="STEPS")
    parts = rest.split(":") if rest else []
    if len(parts) != _STEP_ARITY[op]:
        raise TraceError(f"step {item!r} has {len(parts)} fields, expected {_STEP_ARITY[op]}", field="STEPS")
    values: list[Any] = []
    for i, part in enumerate(parts):
        if _STR_STEPS.get(op) == i:
            values.append(part)
        elif _BOOL_STEPS.get(op) == i:
            values.append(_flag(part, "STEPS"))
        else:
            values.append(_int(part, "STEPS"))
    step: Step = cls(*values)
    return step


def _parse_sock(item: str) -> SockRead:
    if item == "L":
        return Fallback()
    if item.startswith("E/"):
        return SockError(_int(item[2:], "SOCK"))
    if item.startswith("T/"):
        parts = item[2:].split("/")
        if len(parts) >= 4:
            v = [_int(p, "SOCK") for p in parts]
            return TcpInfo(v[0], v[1], v[2], v[3], tuple(v[4:]))
    raise TraceError(f"socket read {item!r} is not T/cwnd/unacked/mss/notsent[/extra...], E/errno or L",
                     field="SOCK")


def _parse_checked(kw: dict[str, str]) -> RunRecord:
    """Field by field, every value checked: what names the problem when the fast path declines."""
    heap_items = [_fields(i, 4, "HEAP") for i in _items(kw["HEAP"])]
    mux_items = [_fields(i, 5, "MUX") for i in _items(kw["MUX"])]
    chan_items = [_fields(i, 7, "CHANS") for i in _items(kw["CHANS"])]
    if len(mux_items) != len(chan_items):
        raise TraceError(f"{len(chan_items)} CHANS elements but {len(mux_items)} MUX elements", field="MUX")
    snaps: list[ChannelSnapshot] = []
    pos = 0
    for c, m in zip(chan_items, mux_items, strict=True):
        nheap = _int(m[4], "MUX")
        if pos + nheap > len(heap_items):
            raise TraceError(f"MUX says {nheap} heap entries but HEAP has only {len(heap_items) - pos} left",
                             field="HEAP")
        heap = tuple(HeapEntry(_int(h[0], "HEAP"), _flt(h[1], "HEAP"), _int(h[2], "HEAP"), _int(h[3], "HEAP"))
                     for h in heap_items[pos:pos + nheap])
        pos += nheap
        mux = MuxSnapshot(_int(m[0], "MUX"), _int(m[1], "MUX"), _flag(m[2], "MUX"), _int(m[3], "MUX"), heap)
        snaps.append(ChannelSnapshot(_int(c[0], "CHANS"), _flag(c[1], "CHANS"), _flag(c[2], "CHANS"),
                                     _int(c[3], "CHANS"), _opt(c[4], "CHANS"), _opt(c[5], "CHANS"), c[6], mux))
    if pos != len(heap_items):
        raise TraceError(f"{len(heap_items) - pos} HEAP entries belong to no MUX element", field="HEAP")
    return RunRecord(
        version=_int(kw["V"], "V"), run=_int(kw["RUN"], "RUN"), sched=kw["SCHED"],
        t0_ns=_int(kw["T0"], "T0"), ti_ns=_int(kw["TI"], "TI"), t1_ns=_int(kw["T1"], "T1"),
        params=Params(_int(kw["IVAL"], "IVAL"), _flt(kw["FACTOR"], "FACTOR"), _flag(kw["NOKS"], "NOKS"),
                      _int(kw["HW"], "HW"), _flt(kw["EWMAF"], "EWMAF"), _int(kw["TICKLEN"], "TICKLEN")),
        n_pending=_int(kw["NPEND"], "NPEND"),
        snapshots=tuple(snaps),
        sock=tuple(_parse_sock(i) for i in _items(kw["SOCK"])),
        steps=tuple(_parse_step(i) for i in _items(kw["STEPS"])),
        readd=tuple(_int(i, "READD") for i in _items(kw["READD"])),
        final=tuple(_int(i, "FINAL") for i in _items(kw["FINAL"])),
        diff_ms=_int(kw["DIFF"], "DIFF"), next_us=_int(kw["NEXT"], "NEXT"),
    ).validate()


_V = TypeVar("_V")


class _Declined(Exception):
    """The fast path met something unusual; the checked path parses it (or names the problem)."""


_FLAG = {"0": False, "1": True}
_OUTCOMES = {"KIST": frozenset(KIST_OUTCOMES), "KISTLite": frozenset(KIST_OUTCOMES),
             "Vanilla": frozenset(VANILLA_OUTCOMES)}
_CALLS = frozenset(EXTERNAL_CALLS)
_STATES = frozenset(SCHED_STATES)
_ONE_INT: dict[str, type[Any]] = {"d": DestroyFlush, "l": LeftOpen, "z": DestroyFailed}
_TWO_INTS: dict[str, type[Any]] = {"v": Writeable, "e": StaleQueue, "y": WriteFailed}
_new = tuple.__new__  # a NamedTuple without its Python-level __new__: the steps are the hot path


def _fast_step(item: str, outcomes: frozenset[str], n_snaps: int) -> Step:
    """One step, one branch per op (most frequent first), validated as it goes."""
    p = item.split(":")
    op = p[0]
    n = len(p)
    step: Step
    if op == "f" and n == 5:
        step = _new(CellFlush, (int(p[1]), int(p[2]), int(p[3]), int(p[4])))
    elif op == "p" and n == 2:
        step = _new(Pop, (int(p[1]),))
    elif op == "c" and n == 3:
        step = _new(CanWrite, (int(p[1]), _FLAG[p[2]]))
    elif op == "k" and n == 3 and p[2] in outcomes:
        step = _new(Outcome, (int(p[1]), p[2]))
    elif op == "s" and n == 4:
        step = _new(ShouldWrite, (int(p[1]), int(p[2]), _FLAG[p[3]]))
    elif op == "W" and n == 4:
        step = _new(EndWrite, (int(p[1]), int(p[2]), int(p[3])))
    elif op == "w" and n == 4:
        step = _new(KernelWrite, (int(p[1]), int(p[2]), int(p[3])))
    elif op == "n" and n == 2 and 0 <= int(p[1]) < n_snaps:
        step = _new(Snapshot, (int(p[1]),))
    elif op == "x" and n == 3 and p[2] in _CALLS:
        step = _new(External, (int(p[1]), p[2]))
    elif op in _ONE_INT and n == 2:
        step = _new(_ONE_INT[op], (int(p[1]),))
    elif op in _TWO_INTS and n == 3:
        step = _new(_TWO_INTS[op], (int(p[1]), int(p[2])))
    else:
        raise _Declined
    return step


# Parsed steps and socket reads by their wire text; steps per scheduler (an outcome's
# validity depends on it). A relay repeats the same few hundred step strings run after run
# (the same channels popped, checked and written; cells of one run flushed in the same tick
# and msec) and the same few socket reads, so most elements are one dict lookup. Both are
# immutable, so sharing them is safe. Snapshot steps are not cached (their validity depends
# on the record's snapshot count); a cache is emptied when full, which bounds its memory.
_CACHE_MAX = 1 << 13  # about 2 MB per cache
_STEP_CACHES: dict[str, dict[str, Step]] = {sched: {} for sched in SCHEDULERS}
_SOCK_CACHE: dict[str, SockRead] = {}


def _remember(cache: dict[str, _V], key: str, value: _V) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _fast_steps(value: str, sched: str, n_snaps: int) -> tuple[Step, ...]:
    if not value:
        return ()
    cache = _STEP_CACHES[sched]
    outcomes = _OUTCOMES[sched]
    out: list[Step] = []
    add = out.append
    for item in value.split(","):
        step = cache.get(item)
        if step is None:
            step = _fast_step(item, outcomes, n_snaps)
            if type(step) is not Snapshot:
                _remember(cache, item, step)
        add(step)
    return tuple(out)


def _fast_snapshots(kw: dict[str, str]) -> tuple[ChannelSnapshot, ...]:
    chans = kw["CHANS"].split(",") if kw["CHANS"] else []
    muxes = kw["MUX"].split(",") if kw["MUX"] else []
    heap = kw["HEAP"].split(",") if kw["HEAP"] else []
    if len(chans) != len(muxes):
        raise _Declined
    snaps: list[ChannelSnapshot] = []
    pos = 0
    for chan, mux in zip(chans, muxes, strict=True):
        c = chan.split(":")
        m = mux.split(":")
        nheap = int(m[4]) if len(m) == 5 else -1
        if len(c) != 7 or c[6] not in _STATES or not 0 <= nheap <= len(heap) - pos:
            raise _Declined
        entries = []
        for h in heap[pos:pos + nheap]:
            e = h.split(":")
            if len(e) != 4:
                raise _Declined
            entries.append(HeapEntry(int(e[0]), float.fromhex(e[1]), int(e[2]), int(e[3])))
        pos += nheap
        snaps.append(ChannelSnapshot(
            int(c[0]), _FLAG[c[1]], _FLAG[c[2]], int(c[3]), None if c[4] == "-" else int(c[4]),
            None if c[5] == "-" else int(c[5]), c[6],
            MuxSnapshot(int(m[0]), int(m[1]), _FLAG[m[2]], int(m[3]), tuple(entries))))
    if pos != len(heap):
        raise _Declined
    return tuple(snaps)


def _fast_sock_read(item: str) -> SockRead:
    if item.startswith("T/"):
        parts = item[2:].split("/")
        if len(parts) == 4:
            return TcpInfo(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]))
        if len(parts) > 4:
            return TcpInfo(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]),
                           tuple(int(p) for p in parts[4:]))
    elif item.startswith("E/"):
        return SockError(int(item[2:]))
    elif item == "L":
        return Fallback()
    raise _Declined


def _fast_sock(value: str) -> tuple[SockRead, ...]:
    out: list[SockRead] = []
    for item in value.split(",") if value else ():
        read = _SOCK_CACHE.get(item)
        if read is None:
            read = _fast_sock_read(item)
            _remember(_SOCK_CACHE, item, read)
        out.append(read)
    return tuple(out)


def _parse_fast(kw: dict[str, str]) -> RunRecord:
    """The common case, several times faster than :func:`_parse_checked`: the same record,
    validated inline (so ``validate`` need not walk the steps again). Anything unusual raises
    ``_Declined`` or ValueError/KeyError, and the checked path takes over."""
    sched = kw["SCHED"]
    if sched not in _OUTCOMES:
        raise _Declined
    snaps = _fast_snapshots(kw)
    n_pending = int(kw["NPEND"])
    sock = _fast_sock(kw["SOCK"])
    tick_len, ewmaf = int(kw["TICKLEN"]), float.fromhex(kw["EWMAF"])
    if (int(kw["V"]) != FORMAT_VERSION or not 0 <= n_pending <= len(snaps)
            or (sched != "Vanilla" and len(sock) != n_pending)
            or not TICK_LEN_MIN <= tick_len <= TICK_LEN_MAX or not 0.0 < ewmaf <= 1.0):
        raise _Declined  # the checked path names the field
    readd, final = kw["READD"], kw["FINAL"]
    return RunRecord(
        FORMAT_VERSION, int(kw["RUN"]), sched, int(kw["T0"]), int(kw["TI"]), int(kw["T1"]),
        Params(int(kw["IVAL"]), float.fromhex(kw["FACTOR"]), _FLAG[kw["NOKS"]], int(kw["HW"]),
               ewmaf, tick_len),
        n_pending, snaps, sock, _fast_steps(kw["STEPS"], sched, len(snaps)),
        tuple(map(int, readd.split(","))) if readd else (),
        tuple(map(int, final.split(","))) if final else (),
        int(kw["DIFF"]), int(kw["NEXT"]))


def parse_wire(line: str) -> RunRecord:
    """Parse one KIST_RUN event line (with or without the ``650`` prefix)."""
    kw = _keywords(line)
    try:
        return _parse_fast(kw)
    except (_Declined, ValueError, KeyError, OverflowError):
        return _parse_checked(kw)


def _wire_step(step: Step) -> str:
    op = STEP_OPS[type(step)]
    parts = [op]
    for v in step:
        parts.append(str(int(v)) if isinstance(v, bool) else str(v))
    return ":".join(parts)


def _wire_sock(s: SockRead) -> str:
    if isinstance(s, TcpInfo):
        return f"T/{s.cwnd}/{s.unacked}/{s.mss}/{s.notsent}" + "".join(f"/{x}" for x in s.extra)
    if isinstance(s, SockError):
        return f"E/{s.errno}"
    return "L"


def _dash(v: int | None) -> str:
    return "-" if v is None else str(v)


def to_wire(rec: RunRecord) -> str:
    """The event line Tor emits for this record (without the ``650 `` prefix)."""
    p = rec.params
    chans = ",".join(f"{s.chan}:{int(s.open)}:{int(s.wide)}:{s.outbuf}:{_dash(s.limit)}:{_dash(s.written)}:{s.state}"
                     for s in rec.snapshots)
    mux = ",".join(f"{s.mux.n_cells}:{s.mux.destroy_q}:{int(s.mux.last_destroy)}:{s.mux.recal}:{len(s.mux.heap)}"
                   for s in rec.snapshots)
    heap = ",".join(f"{h.circ}:{_hexf(h.count)}:{h.tick}:{h.qlen}" for s in rec.snapshots for h in s.mux.heap)
    return " ".join([
        EVENT_NAME, f"V={rec.version}", f"RUN={rec.run}", f"SCHED={rec.sched}", f"T0={rec.t0_ns}",
        f"TI={rec.ti_ns}", f"T1={rec.t1_ns}", f"IVAL={p.interval_ms}", f"FACTOR={_hexf(p.sock_buf_factor)}",
        f"NOKS={int(p.no_kernel_support)}", f"HW={p.orconn_highwater}", f"EWMAF={_hexf(p.ewma_scale_factor)}",
        f"TICKLEN={p.ewma_tick_len}", f"NPEND={rec.n_pending}", f"CHANS={chans}", f"MUX={mux}",
        f"HEAP={heap}", f"SOCK={','.join(_wire_sock(s) for s in rec.sock)}",
        f"STEPS={','.join(_wire_step(s) for s in rec.steps)}",
        f"READD={','.join(map(str, rec.readd))}", f"FINAL={','.join(map(str, rec.final))}",
        f"DIFF={rec.diff_ms}", f"NEXT={rec.next_us}",
    ])


# --------------------------------------------------------------------------- JSON form


def to_dict(rec: RunRecord) -> dict[str, Any]:
    p = rec.params

    def sock(s: SockRead) -> dict[str, Any]:
        if isinstance(s, TcpInfo):
            d = {"cwnd": s.cwnd, "unacked": s.unacked, "mss": s.mss, "notsent": s.notsent}
            return {**d, "extra": list(s.extra)} if s.extra else d
        if isinstance(s, SockError):
            return {"errno": s.errno}
        return {"fallback": True}

    def step(s: Step) -> list[Any]:
        return [STEP_OPS[type(s)], *(int(v) if isinstance(v, bool) else v for v in s)]

    return {
        "v": rec.version, "run": rec.run, "sched": rec.sched,
        "t0_ns": rec.t0_ns, "ti_ns": rec.ti_ns, "t1_ns": rec.t1_ns,
        "params": {"interval_ms": p.interval_ms, "sock_buf_factor": _hexf(p.sock_buf_factor),
                   "no_kernel_support": p.no_kernel_support, "orconn_highwater": p.orconn_highwater,
                   "ewma_scale_factor": _hexf(p.ewma_scale_factor), "ewma_tick_len": p.ewma_tick_len},
        "n_pending": rec.n_pending,
        "snapshots": [
            {"chan": s.chan, "open": s.open, "wide": s.wide, "outbuf": s.outbuf, "limit": s.limit,
             "written": s.written, "state": s.state,
             "mux": {"n_cells": s.mux.n_cells, "destroy_q": s.mux.destroy_q, "last_destroy": s.mux.last_destroy,
                     "recal": s.mux.recal,
                     "heap": [{"circ": h.circ, "count": _hexf(h.count), "tick": h.tick, "qlen": h.qlen}
                              for h in s.mux.heap]}}
            for s in rec.snapshots],
        "sock": [sock(s) for s in rec.sock],
        "steps": [step(s) for s in rec.steps],
        "readd": list(rec.readd), "final": list(rec.final),
        "diff_ms": rec.diff_ms, "next_us": rec.next_us,
    }


def to_json(rec: RunRecord) -> str:
    """One JSON-lines line (no newline)."""
    return json.dumps(to_dict(rec), separators=(",", ":"))


def _get(d: dict[str, Any], key: str, kind: type[Any] | tuple[type[Any], ...], path: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise TraceError("missing", field=f"{path}{key}")
    value = d[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TraceError(f"{value!r} has the wrong type", field=f"{path}{key}")
    return value


def _jflt(d: dict[str, Any], key: str, path: str) -> float:
    return _flt(_get(d, key, str, path), f"{path}{key}")


def from_dict(d: Any) -> RunRecord:
    """Build a record from a parsed JSON object, checking every field."""
    if not isinstance(d, dict):
        raise TraceError("a run record must be a JSON object")
    p = _get(d, "params", dict, "")
    snaps = []
    for i, s in enumerate(_get(d, "snapshots", list, "")):
        sp = f"snapshots[{i}]."
        m = _get(s, "mux", dict, sp)
        heap = tuple(
            HeapEntry(_get(h, "circ", int, f"{sp}mux.heap[{j}]."), _jflt(h, "count", f"{sp}mux.heap[{j}]."),
                      _get(h, "tick", int, f"{sp}mux.heap[{j}]."), _get(h, "qlen", int, f"{sp}mux.heap[{j}]."))
            for j, h in enumerate(_get(m, "heap", list, f"{sp}mux.")))
        limit = s.get("limit") if isinstance(s, dict) else None
        written = s.get("written") if isinstance(s, dict) else None
        for name, val in (("limit", limit), ("written", written)):
            if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
                raise TraceError(f"{val!r} is neither an integer nor null", field=f"{sp}{name}")
        snaps.append(ChannelSnapshot(
            _get(s, "chan", int, sp), _get(s, "open", bool, sp), _get(s, "wide", bool, sp),
            _get(s, "outbuf", int, sp), limit, written, _get(s, "state", str, sp),
            MuxSnapshot(_get(m, "n_cells", int, f"{sp}mux."), _get(m, "destroy_q", int, f"{sp}mux."),
                        _get(m, "last_destroy", bool, f"{sp}mux."), _get(m, "recal", int, f"{sp}mux."), heap)))
    socks: list[SockRead] = []
    for i, s in enumerate(_get(d, "sock", list, "")):
        sp = f"sock[{i}]."
        if isinstance(s, dict) and s.get("fallback") is True:
            socks.append(Fallback())
        elif isinstance(s, dict) and "errno" in s:
            socks.append(SockError(_get(s, "errno", int, sp)))
        else:
            extra = s.get("extra", []) if isinstance(s, dict) else []
            if not isinstance(extra, list) or not all(type(x) is int for x in extra):
                raise TraceError(f"{sp}extra is {extra!r}, not a list of integers", field=f"{sp}extra")
            socks.append(TcpInfo(_get(s, "cwnd", int, sp), _get(s, "unacked", int, sp), _get(s, "mss", int, sp),
                                 _get(s, "notsent", int, sp), tuple(extra)))
    steps: list[Step] = []
    for i, raw in enumerate(_get(d, "steps", list, "")):
        # Fast path (most steps): a known op whose fields are all plain ints.
        if type(raw) is list and raw and type(raw[0]) is str:
            cls = _INT_STEPS.get(raw[0])
            if cls is not None and len(raw) == _STEP_ARITY[raw[0]] + 1 and all(type(v) is int for v in raw[1:]):
                steps.append(cls(*raw[1:]))
                continue
        if not isinstance(raw, list) or not raw or not isinstance(raw[0], str) or raw[0] not in STEP_TYPES:
            raise TraceError(f"{raw!r} is not [op, field, ...] with a known op", field=f"steps[{i}]")
        op = raw[0]
        if len(raw) - 1 != _STEP_ARITY[op]:
            raise TraceError(f"{raw!r} has {len(raw) - 1} fields, expected {_STEP_ARITY[op]}", field=f"steps[{i}]")
        vals: list[Any] = []
        for j, v in enumerate(raw[1:]):
            if _STR_STEPS.get(op) == j:
                ok = isinstance(v, str)
            else:
                ok = isinstance(v, int) and not isinstance(v, bool)
                if _BOOL_STEPS.get(op) == j:
                    ok = ok and v in (0, 1)
                    v = bool(v)
            if not ok:
                raise TraceError(f"field {j + 1} of {raw!r} has the wrong type", field=f"steps[{i}]")
            vals.append(v)
        steps.append(STEP_TYPES[op](*vals))
    if "end_writes" in d:
        raise TraceError("end_writes is not part of format version 1 any more: end-of-run kernel writes are "
                         "W steps at the end of steps (docs/trace-format.md, 'End of run')", field="end_writes")

    def ids(key: str) -> tuple[int, ...]:
        vals = _get(d, key, list, "")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in vals):
            raise TraceError("must be a list of channel ids", field=key)
        return tuple(vals)

    return RunRecord(
        version=_get(d, "v", int, ""), run=_get(d, "run", int, ""), sched=_get(d, "sched", str, ""),
        t0_ns=_get(d, "t0_ns", int, ""), ti_ns=_get(d, "ti_ns", int, ""), t1_ns=_get(d, "t1_ns", int, ""),
        params=Params(_get(p, "interval_ms", int, "params."), _jflt(p, "sock_buf_factor", "params."),
                      _get(p, "no_kernel_support", bool, "params."), _get(p, "orconn_highwater", int, "params."),
                      _jflt(p, "ewma_scale_factor", "params."), _get(p, "ewma_tick_len", int, "params.")),
        n_pending=_get(d, "n_pending", int, ""), snapshots=tuple(snaps), sock=tuple(socks), steps=tuple(steps),
        readd=ids("readd"), final=ids("final"),
        diff_ms=_get(d, "diff_ms", int, ""), next_us=_get(d, "next_us", int, ""),
    ).validate()


def from_json(text: str) -> RunRecord:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    return from_dict(obj)


def parse_line(text: str) -> RunRecord:
    """Either encoding: a JSON object or a KIST_RUN event line."""
    stripped = text.lstrip()
    return from_json(stripped) if stripped.startswith("{") else parse_wire(stripped)


def read_records(path: str | Path) -> Iterator[RunRecord]:
    """Records of a file, one per line, either encoding; blank lines and ``#`` comments skipped.

    Raises TraceError naming the file, the line and the field of the first bad record.
    """
    source = str(path)
    try:
        fh = Path(path).open(encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise TraceError(f"cannot open ({exc.strerror}); check the path", source=source) from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    yield parse_line(line)
                except TraceError as exc:
                    raise TraceError(exc.problem, source=source, line=lineno, field=exc.field) from None
        except UnicodeDecodeError as exc:
            raise TraceError(f"not UTF-8 text ({exc.reason}); is this a run-record file?", source=source) from None


def write_records(path: str | Path, records: Iterable[RunRecord]) -> int:
    """Write records as JSON lines (atomically: a temp file renamed into place); return the count."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(to_json(rec))
            fh.write("\n")
            n += 1
    tmp.replace(target)
    return n
