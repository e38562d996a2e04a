"""Per-socket limits (scheduler_kist.c:199-406) with hand-computed values."""

from __future__ import annotations

import math

import pytest

from kist_reference import socket as s


@pytest.mark.parametrize(("args", "expected"), [
    # cwnd, unacked, mss, notsent, outbuf, factor
    ((10, 4, 1448, 2000, 1000, 1.0), 6 * 1448 + 14480 - 2000 - 1000),   # 20168
    ((4, 2, 1448, 0, 0, 1.0), 8688),                                    # the docs example
    ((4, 10, 1448, 0, 0, 1.0), 5792),                                   # cwnd < unacked: no TCP space
    ((4, 4, 1448, 10000, 0, 1.0), 0),                                   # notsent too big: floor at 0
    ((3, 1, 1447, 0, 0, 0.5), 2894 + 2170),                             # 2170.5 truncated
    ((10, 4, 1448, 0, 0, 0.0), 8688),                                   # factor 0: TCP space only
    ((10, 4, 1448, 0, 40000, 1.0), 0),                                  # outbuf counted (#29168)
    ((10, 4, 1448, 0, 0, math.nan), 8688),                              # clamp(NaN) = 0
    ((10, 4, 1448, 0, 0, 1e300), 0),                                    # INT64_MAX + 8688 wraps negative
])
def test_kist_limit_golden(args: tuple[int, int, int, int, int, float], expected: int) -> None:
    assert s.kist_limit(*args) == expected


def test_clamp_double_to_int64() -> None:
    assert s.clamp_double_to_int64(-2.9) == -2
    assert s.clamp_double_to_int64(2.0 ** 62) == 2 ** 62
    assert s.clamp_double_to_int64(2.0 ** 63) == 2 ** 63 - 1
    assert s.clamp_double_to_int64(-(2.0 ** 63)) == -(2 ** 63)
    assert s.clamp_double_to_int64(-math.inf) == -(2 ** 63)
    assert s.clamp_double_to_int64(math.nan) == 0


@pytest.mark.parametrize(("open_", "outbuf", "wide", "cells", "limit"), [
    (True, 0, True, 64, 34752),            # CEIL_DIV(32768, 514) = 64; 64 * 543
    (True, 0, False, 64, 34624),           # 512-byte cells: 64 * 541
    (True, 32767, True, 1, 543),
    (True, 32768, True, 0, 0),
    (True, 32768 + 513, True, 0, 0),       # size_t wrap lands below one cell
    (True, 32768 + 514, True, 2**31 - 1, 2147483105),  # wraps to INT_MAX cells; int product wraps
    (False, 0, True, 0, 0),                # not OPEN: nothing writeable
])
def test_fallback_limit_golden(open_: bool, outbuf: int, wide: bool, cells: int, limit: int) -> None:
    assert s.num_cells_writeable(open_, outbuf, wide) == cells
    assert s.fallback_limit(open_, outbuf, wide) == limit


def test_fallback_with_a_huge_highwater_wraps_to_a_negative_int() -> None:
    # HW = INT32_MAX (the consensus maximum): 4178960 cells * 543 overflows int32
    lim = s.fallback_limit(True, 0, True, 2**31 - 1)
    assert lim >= 2**63  # sign-extended into the uint64 limit
    assert not s.can_write(lim, 0)  # ... and read back as negative by socket_can_write


@pytest.mark.parametrize(("limit", "written", "can"), [
    (543, 0, True),
    (542, 0, False),
    (1085, 543, False),  # 542 left: not a whole cell
    (1086, 543, True),
    (100, 643, False),   # written past the limit: negative room
    (None, None, True),  # no socket-table entry: SCHED_BUG path returns 1
    (2**64 - 1, 0, False),
])
def test_socket_can_write(limit: int | None, written: int | None, can: bool) -> None:
    assert s.can_write(limit, written) is can
