"""Model branches a replay of a real Tor's records cannot take, each with the reason and Tor's file:line.

Coverage of "every decision branch" only means something against the branches a recorded
run *can* drive. Three kinds are not counted as reachable (``BranchCoverage.reachable``):

- ``config``: code that models configuration or the recorder's clock, never called while a
  record is replayed (the record carries the outcome: the interval, the scale factor, each
  cell's tick);
- ``model``: a guard of the model itself, or a path only a researcher's policy subclass
  takes (faithful replay never does);
- ``tor``: Tor cannot produce the input: it asserts, or the C code never calls the function
  in that state.

A key names a branch as ``harness.checks.coverage.Branch.key`` does; a key ending in ``:``
names every branch of that function. Anything not listed here counts as reachable: what the
edge scenario (harness.checks.edge) does not take is a gap, and the report lists it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unreachable:
    kind: str    # config, model, tor
    reason: str  # why, with Tor's file:line


UNREACHABLE: dict[str, Unreachable] = {
    # --- configuration and the recorder's clock: not called during a replay
    "scheduler.kist_run_interval:": Unreachable(
        "config", "the run interval in force is in the record (IVAL); kist_scheduler_run_interval, "
        "scheduler_kist.c:807-833, is cross-checked against Tor's C in tests/unit/model"),
    "scheduler.select_scheduler:": Unreachable(
        "config", "which scheduler ran is the record's SCHED; select_scheduler, scheduler.c:231-300"),
    "ewma._param:": Unreachable(
        "config", "the EWMA scale factor in force is in the record (EWMAF); consensus parameters, "
        "circuitmux_ewma.c:560-620"),
    "ewma.EwmaConfig.from_options:": Unreachable(
        "config", "the EWMA scale factor in force is in the record (EWMAF); cmux_ewma_set_options, "
        "circuitmux_ewma.c:560-620"),
    "ewma.EwmaClock.read:": Unreachable(
        "config", "replay takes each cell's tick and msec from the record ('f' step) instead of a clock; "
        "cell_ewma_get_current_tick_and_fraction, circuitmux_ewma.c:524-543 (used by the recorder)"),
    "socket.can_write:": Unreachable(
        "model", "the reference copy of socket_can_write (scheduler_kist.c:389-406); the run calls "
        "KistPolicy.can_write, its inlined twin, and tests hold the two equal"),
    "ewma.Mux.detach:": Unreachable(
        "config", "circuitmux_detach_circuit (circuitmux.c:852-935) happens between runs; a record's "
        "snapshots carry the mux after it"),
    # --- guards of the model, and paths only a policy subclass takes
    "scheduler.KistPolicy.run: if fast -> false": Unreachable(
        "model", "only a policy with its own channel_lt (a researcher's subclass) takes the generic heap; "
        "faithful KIST always uses Tor's comparator, scheduler.c:402-439"),
    "scheduler.KistPolicy.write_to_kernel: if chan.outbuf -> false": Unreachable(
        "tor", "write_to_kernel is only called after channel_should_write_to_kernel said the outbuf holds "
        "more than 8 cells (scheduler_kist.c:461-468, 638-647): it is never empty there"),
    "heap.remove: if idx < 0 or idx >= len(heap) or heap[idx] is not item -> true": Unreachable(
        "tor", "removing an item the heap does not hold: Tor asserts (smartlist.c:785-786 "
        "tor_assert(idx >= 0), tor_assert(sl->list[idx] == item)); replay reports it as a model invariant"),
    "scheduler.Policy.flush_some_cells: if num_cells <= 0 or not chan.open -> true": Unreachable(
        "model", "only Vanilla calls it (KIST inlines the flush), always with at least one cell on a "
        "channel num_cells_writeable just found open, and nothing in its flush loop closes a channel "
        "(channel.c:1735-1770, scheduler_vanilla.c:77-92)"),
    "scheduler.Policy.flush_from_first_active_circuit: if r == FAILED -> true": Unreachable(
        "tor", "channel_write_packed_cell fails only on a channel that is not open (channel.c:1448, 1496) "
        "or whose TLS connection is gone (channeltls.c:870-878); the flush starts only on an open "
        "channel (channel.c:1746) and the connection is detached only after channel_closed "
        "(connection_or.c:761-766): no path found; Tor calls it 'very unlikely' "
        "(relay.c:3234)"),
    "scheduler.Policy.flush_from_first_active_circuit: if env.destroy(chan) -> false": Unreachable(
        "tor", "a DESTROY cell write fails only as a relay cell write does (see FAILED above); "
        "relay.c:3144-3149"),
    "scheduler.VanillaPolicy.run: if self.writeable(st, chan) > 0 -> true": Unreachable(
        "tor", "Vanilla re-adds a channel only if, after flushing all n cells num_cells_writeable "
        "allowed, it can still write: n = CEIL_DIV(highwater - outbuf, cell) (channeltls.c:800-820) "
        "and each cell adds a whole cell to the outbuf, so afterwards the outbuf is within a cell above "
        "the high-water mark and n is 0; when the outbuf was already above it, n wraps to INT_MAX and "
        "the flush runs out of cells first (scheduler_vanilla.c:77-112)"),
    "scheduler.VanillaPolicy.run: elif self.writeable(st, chan) > 0 [#2] -> true": Unreachable(
        "tor", "the wfc outcome needs the same as readd: room left after flushing every allowed cell "
        "(see readd; scheduler_vanilla.c:113-121)"),
    "channel.Pending.doesnt_want_writes:": Unreachable(
        "tor", "scheduler_channel_doesnt_want_writes has one caller, channel_change_state_ into "
        "CHANNEL_STATE_MAINT (channel.c:1608-1609); MAINT is entered only when an OR connection of an "
        "OPEN channel changes to a state other than OPEN (channeltls.c:1013-1019), and every "
        "connection_or_change_state to such a state is a handshake step taken before the channel "
        "opens (connection_or.c:738, 1515, 1520, 1659, 1713, 1953; channeltls.c:1435-1444 asserts "
        "TLS_HANDSHAKING or SERVER_VERSIONS_WAIT): Tor 0.4.9 has no renegotiation back from OPEN"),
    "channel.Pending.call: elif name == \"dw\" -> true": Unreachable(
        "tor", "a dw step is a call of scheduler_channel_doesnt_want_writes, which Tor never makes "
        "(see channel.Pending.doesnt_want_writes)"),
    "channel.Pending.call: elif name == \"rel\" -> false": Unreachable(
        "model", "a call name other than the patch's four (hw, ww, dw, rel: sched_trace_external's "
        "callers in patches/0001) is a malformed record, rejected before replay "
        "(kist_reference.trace.EXTERNAL_CALLS)"),
    "scheduler.KistPolicy.run: if not chan.open -> true": Unreachable(
        "tor", "#23751's check after the one-cell flush (scheduler_kist.c:652-664). The channel was open "
        "when popped: a channel leaving OPEN is taken out of channels_pending (channel.c:1600-1607 -> "
        "scheduler_release_channel, scheduler.c:634-661), MAINT is never entered (see "
        "doesnt_want_writes) and cells reach only channels circuits were attached to once open "
        "(circuitbuild.c:674-731). The flush adds one cell to the outbuf and, in 0.4.9.11, writes "
        "nothing to the kernel (relay.c:3114-3273, channel.c:1489-1514, channeltls.c:860-882, "
        "connection.c:4747-4790); it closes the channel only if buf_add fails "
        "(connection.c:4786-4789 -> connection_write_to_buf_failed -> connection_or_close_for_error, "
        "connection.c:4727-4732), i.e. with the outbuf at BUF_MAX_LEN (INT_MAX - 1 bytes, "
        "lib/buf/buffers.h:33), 2 GiB that KIST's per-socket limit never lets one channel hold"),
    "socket.num_cells_writeable: if not open_ -> true": Unreachable(
        "tor", "channel_num_cells_writeable is 0 for a channel not OPEN (channel.c:3080-3097); Vanilla "
        "asks on a channel it just popped (scheduler_vanilla.c:77), open as in KistPolicy.run's #23751 "
        "check, and after flushing every cell it allowed (scheduler_vanilla.c:100, 115): each counted "
        "cell was written while the channel was open (channel.c:1448-1462) and nothing in the flush "
        "closes it short of a 2 GiB outbuf (see #23751); KISTLite asks at the run's start, for "
        "pending channels only (scheduler_kist.c:317-324, 615-618)"),
    "scheduler.VanillaPolicy.run: for chan in to_readd -> iterates": Unreachable(
        "tor", "to_readd holds only readd channels (see readd; scheduler_vanilla.c:100-103, 147-155)"),
}


def why(key: str) -> Unreachable | None:
    """The reason a branch is not reachable from a replay of real Tor, or None if it is."""
    if key in UNREACHABLE:
        return UNREACHABLE[key]
    return UNREACHABLE.get(key.split(": ", 1)[0] + ":")
