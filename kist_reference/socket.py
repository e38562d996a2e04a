"""Per-socket write limits of KIST, KISTLite and the no-kernel-support fallback.

``update_socket_info_impl`` (``scheduler_kist.c:199-325``) and ``socket_can_write``
(389-406), with C's integer widths: kernel values are uint32, ``tcp_space`` and
``extra_space`` int64 (Tor builds with ``-fwrapv``, configure.ac:1386, so signed
overflow wraps), ``limit`` and ``written`` uint64. Every cell is charged 543 bytes
(``CELL_MAX_NETWORK_SIZE`` 514 + ``TLS_PER_CELL_OVERHEAD`` 29) whatever its real size.
"""

from __future__ import annotations

import math

CELL_MAX_NETWORK_SIZE = 514  # or.h:532
TLS_PER_CELL_OVERHEAD = 29  # channeltls.h:18
CELL_CHARGE = CELL_MAX_NETWORK_SIZE + TLS_PER_CELL_OVERHEAD  # 543
SHOULD_WRITE_THRESHOLD = CELL_MAX_NETWORK_SIZE * 8  # 4112, scheduler_kist.c:467
OR_CONN_HIGHWATER_DEFAULT = 32 * 1024  # congestion_control_common.c:76
OR_CONN_LOWWATER_DEFAULT = 16 * 1024  # congestion_control_common.c:77
EINVAL = 22

_U64 = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_INT_MAX = (1 << 31) - 1


def wrap_i64(x: int) -> int:
    x &= _U64
    return x - (1 << 64) if x >> 63 else x


def wrap_i32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >> 31 else x


def c_div(a: int, b: int) -> int:
    """C integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def clamp_double_to_int64(x: float) -> int:
    """``lib/math/fp.c:61-116``: NaN -> 0, |x| < 2^63 -> truncated, else INT64_MIN/MAX."""
    if math.isnan(x):
        return 0
    if math.isfinite(x) and math.frexp(x)[1] <= 63:
        return int(x)
    return _I64_MIN if math.copysign(1.0, x) < 0 else _I64_MAX


def cell_network_size(wide_circ_ids: bool) -> int:
    """``get_cell_network_size`` (or.h:546-549)."""
    return CELL_MAX_NETWORK_SIZE if wide_circ_ids else CELL_MAX_NETWORK_SIZE - 2


def kist_limit(cwnd: int, unacked: int, mss: int, notsent: int, outbuf: int, factor: float) -> int:
    """The KIST limit from TCP_INFO and SIOCOUTQNSD (scheduler_kist.c:282-304)."""
    cwnd &= 0xFFFFFFFF
    unacked &= 0xFFFFFFFF
    mss &= 0xFFFFFFFF
    notsent &= 0xFFFFFFFF
    tcp_space = wrap_i64((cwnd - unacked) * mss) if cwnd >= unacked else 0
    extra = wrap_i64(clamp_double_to_int64(float(wrap_i64(cwnd * mss)) * factor) - notsent - wrap_i64(outbuf))
    total = wrap_i64(tcp_space + extra)
    if total < 0:
        return 0
    return total & _U64


def num_cells_writeable(open_: bool, outbuf: int, wide_circ_ids: bool,
                        highwater: int = OR_CONN_HIGHWATER_DEFAULT) -> int:
    """``channel_num_cells_writeable`` (channel.c:3080-3097) ->
    ``channel_tls_num_cells_writeable_method`` (channeltls.c:800-820).

    ``highwater`` is uint32 and ``outbuf`` size_t, so when the outbuf exceeds the high-water
    mark by more than a cell the unsigned difference wraps and the result is INT_MAX, not 0
    (``connection_or_num_cells_writeable``, which does check, is not the function called).
    """
    if not open_:
        return 0
    size = cell_network_size(wide_circ_ids)
    n = (((highwater & 0xFFFFFFFF) - outbuf) & _U64) + size - 1
    n = (n & _U64) // size
    return min(n, _INT_MAX)


def fallback_limit(open_: bool, outbuf: int, wide_circ_ids: bool,
                   highwater: int = OR_CONN_HIGHWATER_DEFAULT) -> int:
    """KISTLite / no-kernel-support limit (scheduler_kist.c:317-324): writeable cells times
    (cell size + 29), an ``int`` product (wraps), stored in a uint64."""
    cells = num_cells_writeable(open_, outbuf, wide_circ_ids, highwater)
    return wrap_i32(cells * (cell_network_size(wide_circ_ids) + TLS_PER_CELL_OVERHEAD)) & _U64


def can_write(limit: int | None, written: int | None) -> bool:
    """``socket_can_write`` (389-406): ``(int64)(limit - written) / 543 > 0``. No socket-table
    entry (``None``) means "not limited" (the SCHED_BUG branch returns 1)."""
    if limit is None or written is None:
        return True
    room = (limit - written) & _U64
    if room >> 63:
        return False  # negative: C division truncates toward zero, so the quotient is <= 0
    return room // CELL_CHARGE > 0
