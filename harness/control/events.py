"""stem event classes for the patch's events, and any parsed event → a typed Record.

stem 1.8.2 parses an unknown event name as a bare ``Event``; registering a subclass in
``stem.response.events.EVENT_TYPE_TO_CLASS`` gives it typed fields. The patch's events
are single lines of ``key=value`` tokens, parsed here with ``_SKIP_PARSING`` set: stem's
own keyword parser matches ``^(.*) key=value$`` from the end of the line once per token,
which is quadratic on a run record with hundreds of tokens.

A line that does not parse becomes an ERROR record holding the raw line: never a crash.
"""

from __future__ import annotations

import datetime
import enum
import logging
import re
from collections.abc import Mapping
from typing import Any

import stem
import stem.response
import stem.response.events as stem_events

from harness.store.aggregates import run_fields
from harness.store.records import (
    BW,
    KIST_KQTIME,
    KIST_OVERHEAD,
    KIST_QTIME,
    KIST_RUN,
    Record,
    error_record,
)

log = logging.getLogger(__name__)

# Standard events the collector always asks for, and those tor only emits in testing
# networks (TestingEnableConnBwEvent / TestingEnableCellStatsEvent; CIRC_BW needs nothing).
STANDARD_EVENTS = (BW, "ORCONN", "CIRC")
OPTIONAL_EVENTS = ("CONN_BW", "CIRC_BW", "CELL_STATS")
# GETCONF option that must be 1 for tor to emit the event at all.
EVENT_ENABLING_OPTION = {"CONN_BW": "TestingEnableConnBwEvent",
                         "CELL_STATS": "TestingEnableCellStatsEvent"}

# Fields stem parses that must never reach a store or a log.
_SECRET_FIELDS = frozenset({"socks_password", "socks_username"})
# Derived attributes worth keeping beyond the positional and keyword arguments.
_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "ORCONN": ("endpoint_fingerprint", "endpoint_nickname", "endpoint_address", "endpoint_port"),
    "CONF_CHANGED": ("changed", "unset"),
}


def _convert_value(text: str, kind: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":  # decimal or C99 hex (%a), so doubles stay exact
        return float.fromhex(text) if "0x" in text.lower() else float(text)
    if kind == "intlist":
        return [int(v) for v in text.split(",")] if text else []
    if kind == "int?":  # "-": the relay had no value
        return None if text == "-" else int(text)
    return text


class KeyValueEvent(stem_events.Event):
    """A single-line event of ``key=value`` tokens with a declared type per known key.

    Known keys become record fields (``FIELDS``: wire key → (field name, type)); unknown
    keys are kept as strings under their lower-cased name (a newer patch may add fields);
    a missing required key or a value of the wrong type raises ``ProtocolError``.
    """

    _SKIP_PARSING = True
    FIELDS: Mapping[str, tuple[str, str]] = {}   # type: int | float | intlist | str
    REQUIRED: frozenset[str] = frozenset()

    fields: dict[str, Any]

    def _parse(self) -> None:
        tokens = str(self).split()
        values: dict[str, Any] = {}
        seen: set[str] = set()
        for token in tokens[1:]:
            key, sep, text = token.partition("=")
            if not sep or not key:
                raise stem.ProtocolError(f"{self.type} token {token!r} is not key=value: {self}")
            if key in seen:
                raise stem.ProtocolError(f"{self.type} repeats key {key!r}: {self}")
            seen.add(key)
            name, kind = self.FIELDS.get(key, (key.lower(), "str"))
            try:
                values[name] = _convert_value(text, kind)
            except ValueError as exc:
                raise stem.ProtocolError(
                    f"{self.type} field {key}={text!r} is not a valid {kind}: {self}") from exc
        missing = self.REQUIRED - seen
        if missing:
            raise stem.ProtocolError(f"{self.type} lacks {', '.join(sorted(missing))}: {self}")
        self.fields = values


def define_kv_event(name: str, fields: Mapping[str, tuple[str, str]],
                    required: tuple[str, ...] = (), *, by_default: bool = True) -> type[KeyValueEvent]:
    """A KeyValueEvent subclass for one of the patch's events, registered with stem.

    by_default: subscribed whenever tor offers it; otherwise only when asked for
    (``CollectConfig.extra_events``, ``collect --events``).
    """
    cls = type(f"{name.title().replace('_', '')}Event", (KeyValueEvent,),
               {"FIELDS": dict(fields), "REQUIRED": frozenset(required or fields)})
    stem_events.EVENT_TYPE_TO_CLASS[name] = cls
    (CUSTOM_EVENTS if by_default else OPT_IN_EVENTS)[name] = cls
    return cls


class KistRunEvent(stem_events.Event):
    """One KIST scheduler run; the payload is parsed by ``kist_reference.trace``.

    ``run`` holds the parsed ``kist_reference.trace.RunRecord``; ``payload`` the text after
    the event name, which the store keeps (``Record.raw``) so the export for replay is lossless.
    """

    _SKIP_PARSING = True
    payload: str
    run: Any

    def _parse(self) -> None:
        self.payload = str(self)[len(self.type):].strip()
        self.run = parse_run_payload(self.payload)


def parse_run_payload(payload: str) -> Any:
    """``kist_reference.trace.parse_wire`` on a KIST_RUN payload; its errors become ProtocolError."""
    from kist_reference import trace

    try:
        return trace.parse_wire(payload)
    except ValueError as exc:  # TraceError names the field
        raise stem.ProtocolError(f"KIST_RUN payload does not parse: {exc}") from exc


def run_summary(run: Any) -> dict[str, Any]:
    """The fields report queries need without re-parsing the payload (the writer's, too)."""
    return run_fields(run)


def kist_run_payload(message: stem.response.ControlMessage) -> str | None:
    """The payload of an unparsed single-line KIST_RUN message, else None (cheap check)."""
    content = message.content()
    if len(content) == 1 and content[0][0] == "650" and content[0][2].startswith("KIST_RUN "):
        return content[0][2][len("KIST_RUN "):].strip()
    return None


CUSTOM_EVENTS: dict[str, type[stem_events.Event]] = {KIST_RUN: KistRunEvent}
# The patch's events a collector asks for only on request: their volume grows with traffic.
OPT_IN_EVENTS: dict[str, type[stem_events.Event]] = {}
stem_events.EVENT_TYPE_TO_CLASS[KIST_RUN] = KistRunEvent

# docs/control-events.md, 4.1.y: what one scheduler run cost (the paper's section 5.2)
KistOverheadEvent = define_kv_event(KIST_OVERHEAD, {
    "RUN": ("run", "int"), "SCHED": ("sched", "str"), "T0": ("t0_ns", "int"),
    "PENDING": ("pending", "int"), "SOCKETS": ("sockets", "int"), "SOCKNS": ("sock_ns", "int"),
    "RUNNS": ("run_ns", "int"), "CELLS": ("cells", "int"), "WRITES": ("writes", "int"),
    "BYTES": ("bytes", "int"), "DIFF": ("diff_ms", "int"), "NEXT": ("next_us", "int")})

# docs/control-events.md, 4.1.z: Tor queue time of each cell one run flushed. About 30 bytes
# per forwarded cell: opt-in, so a relay left collecting for days does not fill its disk.
KistQtimeEvent = define_kv_event(KIST_QTIME, {
    "RUN": ("run", "int"), "SCHED": ("sched", "str"), "T0": ("t0_ns", "int"), "N": ("n", "int"),
    "CELLS": ("cells", "str")}, by_default=False)

# docs/control-events.md, 4.1.w: kernel queue time of a sampled write (SO_TIMESTAMPING).
KistKqtimeEvent = define_kv_event(KIST_KQTIME, {
    "CHAN": ("chan", "int"), "T": ("t_ns", "int"), "BYTES": ("bytes", "int"),
    "SCHEDNS": ("sched_ns", "int?"), "SNDNS": ("snd_ns", "int?")}, by_default=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def event_fields(event: stem_events.Event) -> dict[str, Any]:
    """The typed fields of a parsed event, JSON-ready, without secrets."""
    if isinstance(event, KeyValueEvent):
        return dict(event.fields)
    if isinstance(event, KistRunEvent):
        return run_summary(event.run)
    cls = type(event)
    if cls is stem_events.Event:  # an event stem has no class for: keep its arguments
        return {"args": list(event.positional_args), "kw": dict(event.keyword_args)}
    names = (*cls._POSITIONAL_ARGS, *cls._KEYWORD_ARGS.values(), *_EXTRA_FIELDS.get(event.type, ()))
    fields = {n: _jsonable(getattr(event, n, None)) for n in names
              if n not in _SECRET_FIELDS and getattr(event, n, None) is not None}
    if event.type == "CELL_STATS":  # totals, so queue time per cell is one SQL ratio
        for side in ("inbound", "outbound"):
            fields[f"{side}_ms"] = sum((getattr(event, f"{side}_time") or {}).values())
            fields[f"{side}_cells"] = sum((getattr(event, f"{side}_removed") or {}).values())
    if "changed" in fields:  # CONF_CHANGED: a password hash is nobody's business
        fields["changed"] = {k: ("<redacted>" if _SECRET_OPTION.search(k) else v)
                             for k, v in fields["changed"].items()}
    return fields


_SECRET_OPTION = re.compile(r"password|cookie|secret|key", re.IGNORECASE)
_SECRET_TOKEN = re.compile(r"(SOCKS_USERNAME|SOCKS_PASSWORD)=(\"[^\"]*\"|\S*)")


def _redact(text: str) -> str:
    """Raw lines are kept for re-parsing, but a client's SOCKS credentials are not."""
    return _SECRET_TOKEN.sub(r"\1=<redacted>", text)


def to_record(message: stem.response.ControlMessage, arrived: float) -> Record:
    """Parse one raw 650 message with stem into a Record; a malformed one into an ERROR record."""
    try:
        stem.response.convert("EVENT", message)
        assert isinstance(message, stem_events.Event)
        fields = event_fields(message)
        raw = None
        if isinstance(message, KistRunEvent):
            raw = message.payload
            message.run = None  # the parsed run is tens of kB; the record keeps what it needs
        return Record(message.type, arrived, fields, raw)
    except Exception as exc:  # noqa: BLE001 - any parse failure is recorded, never raised
        raw = str(message) or message.raw_content().strip()
        # stem quotes the whole line at the end of its messages; the raw line is kept anyway
        reason = str(exc).replace(raw, "").rstrip(": ")[:300] or type(exc).__name__
        return error_record(arrived, _redact(raw), _redact(reason))


def parse_line(line: str, arrived: float = 0.0) -> Record:
    """A wire line (``650 NAME ...``) → Record; for tests and replaying recorded lines."""
    try:
        message = stem.response.ControlMessage.from_str(line, normalize=True)
    except Exception as exc:  # noqa: BLE001 - framing errors are malformed lines too
        return error_record(arrived, line, f"unframed: {exc}")
    return to_record(message, arrived)
