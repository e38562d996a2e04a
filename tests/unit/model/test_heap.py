"""Tor's smartlist heap (lib/container/smartlist.c:679-798): sift rules, ties, stale keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kist_reference import heap


class Item:
    def __init__(self, name: str, key: float) -> None:
        self.name = name
        self.key = key
        self.heap_idx = -1


def lt(a: Item, b: Item) -> bool:
    return a.key < b.key


def build(keys: list[tuple[str, float]]) -> list[Item]:
    h: list[Item] = []
    for name, key in keys:
        heap.add(h, lt, Item(name, key))
    return h


def names(h: list[Item]) -> list[str]:
    return [i.name for i in h]


def test_add_swaps_only_on_strictly_smaller() -> None:
    h = build([("a", 1.0), ("b", 1.0), ("c", 0.5)])
    # b ties with a: stays a child; c is smaller than a: rises to the root
    assert names(h) == ["c", "b", "a"]
    assert [i.heap_idx for i in h] == [0, 1, 2]


def test_equal_keys_pop_in_tor_order_not_insertion_order() -> None:
    # Hand-computed from smartlist_heapify: on a tie the parent moves to the left child.
    # [a b c d e] -> pop a: e to root, sinks left twice -> [b d c e] ... -> a b d e c
    h = build([(n, 1.0) for n in "abcde"])
    order = [heap.pop(h, lt).name for _ in range(5)]
    assert order == ["a", "b", "d", "e", "c"]


def test_right_child_wins_only_if_strictly_smaller_than_left() -> None:
    h = build([("root", 0.0), ("left", 2.0), ("right", 2.0), ("last", 9.0)])
    heap.pop(h, lt)
    assert names(h)[0] == "left"


def test_pop_marks_index_minus_one() -> None:
    h = build([("a", 1.0), ("b", 2.0)])
    top = heap.pop(h, lt)
    assert top.heap_idx == -1 and h[0].heap_idx == 0


def test_remove_sifts_down_only_and_can_break_the_heap() -> None:
    h = build([("r", 0.0), ("x", 5.0), ("y", 1.0), ("x1", 6.0), ("x2", 7.0), ("y1", 2.0), ("y2", 3.0)])
    assert names(h) == ["r", "x", "y", "x1", "x2", "y1", "y2"]
    victim = h[3]  # x1 under x (5.0)
    heap.remove(h, lt, victim)
    # y2 (3.0) fills the hole under x (5.0) and is not sifted up: Tor leaves the heap broken
    assert names(h) == ["r", "x", "y", "y2", "x2", "y1"]
    assert victim.heap_idx == -1
    assert not heap.is_heap(h, lt)


def test_remove_last_element() -> None:
    h = build([("a", 1.0), ("b", 2.0)])
    heap.remove(h, lt, h[1])
    assert names(h) == ["a"]


def test_stale_key_is_not_resifted() -> None:
    h = build([("a", 1.0), ("b", 5.0), ("c", 6.0)])
    h[1].key = 0.0  # b's key drops while it sits in the heap (a mux head changed)
    assert heap.pop(h, lt).name == "a"  # Tor still pops a: the array decides


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=60, unique=True))
def test_distinct_keys_pop_sorted(keys: list[int]) -> None:
    h = build([(str(k), float(k)) for k in keys])
    assert heap.is_heap(h, lt)
    assert [heap.pop(h, lt).key for _ in keys] == sorted(float(k) for k in keys)


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=40),
       st.data())
def test_indices_always_match_positions(keys: list[int], data: st.DataObject) -> None:
    h = build([(str(i), float(k)) for i, k in enumerate(keys)])
    while h:
        if data.draw(st.booleans()):
            heap.pop(h, lt)
        else:
            heap.remove(h, lt, h[data.draw(st.integers(0, len(h) - 1))])
        assert all(item.heap_idx == i for i, item in enumerate(h))
