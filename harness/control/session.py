"""One control connection: a stem Controller that hands events on, feature detection,
and subscriptions that survive tor refusing some of them.

stem's event thread normally parses every event and calls listeners; here it only hands
the raw message to a sink (the collector's bounded buffer), so stem's own unbounded
queue never backs up behind parsing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.control import events as ev

log = logging.getLogger(__name__)

# GETINFO key a patch series may answer with its hash; 0001 does not (yet): probing an
# unknown key costs one 552 reply
PATCH_HASH_INFO = "kist/patch-hash"

_controller_class: Any = None


def make_controller(control_socket: Any, sink: Callable[[Any], None]) -> Any:
    """A stem Controller on a connected socket whose event thread calls ``sink(message)``."""
    global _controller_class
    if _controller_class is None:
        import stem.control
        import stem.response

        class HandOffController(stem.control.Controller):  # type: ignore[misc]
            _sink: Callable[[Any], None] | None = None

            def _handle_event(self, event_message: Any) -> None:
                if event_message.content()[0][2].startswith("CONF_CHANGED"):
                    # stem's own listener keeps its GETCONF cache true; rare, so parse
                    # here and give the writer a copy (parsing mutates the message)
                    copy = stem.response.ControlMessage.from_str(event_message.raw_content())
                    super()._handle_event(event_message)
                    event_message = copy
                if self._sink is not None:
                    self._sink(event_message)

        _controller_class = HandOffController
    controller = _controller_class(control_socket)
    controller._sink = sink
    return controller


def subscribe(controller: Any, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Subscribe to each event tor accepts; return (accepted, {rejected: why}).

    Each name gets its own listener so a rejected one can be removed: stem raises
    ProtocolError on a rejected name but keeps the listener, and would put the name in
    every later SETEVENTS.
    """
    import stem

    accepted: list[str] = []
    rejected: dict[str, str] = {}
    for name in names:
        def listener(_event: Any) -> None:
            pass  # events go through HandOffController._handle_event, not listeners
        try:
            controller.add_event_listener(listener, name)
            accepted.append(name)
        except (stem.ProtocolError, stem.InvalidRequest) as exc:
            rejected[name] = f"tor rejected SETEVENTS {name} ({exc})"
            controller.remove_event_listener(listener)
    return accepted, rejected


@dataclass(frozen=True)
class Features:
    """What one tor offers, and what the collector will not get from it (and why)."""

    version: str
    fingerprint: str
    patch_hash: str
    offered: tuple[str, ...]
    wanted: tuple[str, ...]
    unavailable: dict[str, str]


def detect(controller: Any, extra_events: tuple[str, ...] = (),
           patch_hash: str | None = None) -> Features:
    """Version, identity, patch, and which events to ask for (standard, optional, the patch's)."""
    version = str(controller.get_version()).split(" ")[0]
    fingerprint = controller.get_info("fingerprint", None) or "client"
    names = set((controller.get_info("events/names", "") or "").split())
    patched = any(name in names for name in ev.CUSTOM_EVENTS)
    # the series does not report its hash: --patch-hash (or `kist-harness run`) supplies it
    patch = patch_hash or controller.get_info(PATCH_HASH_INFO, None) or ("unknown" if patched else "none")
    wanted: list[str] = []
    unavailable: dict[str, str] = {}
    for name in (*ev.STANDARD_EVENTS, *ev.OPTIONAL_EVENTS, *ev.CUSTOM_EVENTS, *extra_events):
        if name in wanted:
            continue
        if names and name not in names:
            unavailable[name] = ("this tor is not patched (no such event in GETINFO events/names)"
                                 if name in ev.CUSTOM_EVENTS or name in ev.OPT_IN_EVENTS
                                 else "not in GETINFO events/names")
            continue
        option = ev.EVENT_ENABLING_OPTION.get(name)
        if option and controller.get_conf(option, "0") != "1":
            # subscribing works, but tor never emits it: say so instead of silence
            unavailable[name] = f"tor emits it only with {option} 1, which needs TestingTorNetwork 1"
            continue
        wanted.append(name)
    return Features(version, fingerprint, patch, tuple(sorted(names)), tuple(wanted), unavailable)
