"""The original KIST limit, min(send-buffer space, congestion-window space), as a policy.

The model of ``0001-Limit-KIST-writes-by-send-buffer-space-and-congestio.patch`` in this
directory: the patch changes ``update_socket_info_impl`` (scheduler_kist.c) and this class
changes :meth:`KistPolicy.socket_limit`, the model's copy of it. Everything else (the run
loop, the comparator, ``socket_can_write``, the fallback of KISTLite and of a failed
syscall) is inherited, so the differential checks the new formula and that nothing else
moved.

The patch appends what it read for the send-buffer term to each socket read of a KIST_RUN
record (``T/cwnd/unacked/mss/notsent/sndbuf/outq``); the model finds them in
``TcpInfo.extra``. A record without them (a tor built without the patch) cannot be judged
by this formula: the replay stops there with a clear "model invariant" divergence.

Run it (docs/byo-scheduler.md)::

    kist-harness run basic --patches docs/examples/kist-sndbuf-limit \\
        --policy docs/examples/kist-sndbuf-limit/policy.py:SndbufLimitKist
"""

from __future__ import annotations

from kist_reference.channel import Channel
from kist_reference.scheduler import KistPolicy, RunState
from kist_reference.socket import wrap_i64
from kist_reference.trace import SockRead, TcpInfo

_U32 = 0xFFFFFFFF


class SndbufLimitKist(KistPolicy):
    """KIST whose per-socket limit is the smaller of the free send-buffer space and the
    congestion window's free space (Jansen et al., USENIX Security 2014)."""

    name = "KIST-sndbuf"

    def socket_limit(self, st: RunState, chan: Channel, read: SockRead) -> int:
        if isinstance(read, TcpInfo) and not self.lite and not st.no_kernel_support:
            if len(read.extra) != 2:
                raise ValueError(f"socket read of channel {chan.chan_id} has {len(read.extra)} extra values, not "
                                 "sndbuf/outq: was this tor built with the kist-sndbuf-limit patch?")
            sndbuf, outq = (x & _U32 for x in read.extra)
            cwnd, unacked, mss = read.cwnd & _U32, read.unacked & _U32, read.mss & _U32
            # scheduler_kist.c, as patched: uint32 kernel values, int64 arithmetic
            tcp_space = wrap_i64((cwnd - unacked) * mss) if cwnd >= unacked else 0
            sndbuf_space = max(sndbuf - outq, 0)
            return min(tcp_space, sndbuf_space)
        # KISTLite, known lack of kernel support, a failed syscall: Tor's fallback, unchanged
        return super().socket_limit(st, chan, read)
