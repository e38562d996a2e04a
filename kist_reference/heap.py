"""Tor's smartlist priority queue, operation for operation (``lib/container/smartlist.c``).

Both of Tor's scheduler heaps use it: ``channels_pending`` (``scheduler.c:166``) and each
EWMA mux's ``active_circuit_pqueue`` (``circuitmux_ewma.c:65``). Replay must make the same
choice as Tor even where the heap is "wrong", so this module copies the C exactly:

- keys are read live at compare time; nothing is re-sifted when a key changes, so stale
  keys and ties are decided by the array layout;
- ``add`` (smartlist.c:726-748) sifts up and swaps only while ``cmp(item, parent) < 0``;
- ``pop`` (755-772) moves the last element to the root, then ``heapify`` (679-718): the
  parent stays only if ``cmp(parent, left) < 0`` (on a tie the left child rises), the right
  child wins only if strictly less than the current best;
- ``remove`` (779-798) fills the hole with the last element and sifts **down only**, so the
  heap property can break when the moved element is smaller than its new parent.

Tor only ever asks ``cmp(a, b) < 0``, so the comparator here is a ``lt(a, b) -> bool``.
Items carry their array index in ``heap_idx`` (``sched_heap_idx`` / ``heap_index``), -1
when not in a heap, as in Tor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar


class HeapItem(Protocol):
    heap_idx: int


T = TypeVar("T", bound=HeapItem)
Less = Callable[[T, T], bool]


def heapify(heap: list[T], lt: Callable[[T, T], bool], idx: int) -> None:
    """Sift the element at ``idx`` down (smartlist.c:679-718)."""
    n = len(heap)
    while True:
        left = 2 * idx + 1
        if left >= n:
            return
        best = idx if lt(heap[idx], heap[left]) else left
        right = left + 1
        if right < n and lt(heap[right], heap[best]):
            best = right
        if best == idx:
            return
        a = heap[idx]
        b = heap[best]
        heap[idx] = b
        heap[best] = a
        b.heap_idx = idx
        a.heap_idx = best
        idx = best


def add(heap: list[T], lt: Callable[[T, T], bool], item: T) -> None:
    """Append and sift up, swapping only on a strict ``<`` (smartlist.c:726-748)."""
    idx = len(heap)
    heap.append(item)
    item.heap_idx = idx
    while idx:
        parent = (idx - 1) // 2
        above = heap[parent]
        if not lt(item, above):
            return
        heap[parent] = item
        heap[idx] = above
        item.heap_idx = parent
        above.heap_idx = idx
        idx = parent


def pop(heap: list[T], lt: Callable[[T, T], bool]) -> T:
    """Remove and return the root (smartlist.c:755-772). ``heap`` must not be empty."""
    top = heap[0]
    top.heap_idx = -1
    last = heap.pop()
    if heap:
        heap[0] = last
        last.heap_idx = 0
        heapify(heap, lt, 0)
    return top


def remove(heap: list[T], lt: Callable[[T, T], bool], item: T) -> None:
    """Remove ``item``: the last element fills its hole and sifts down only (779-798)."""
    idx = item.heap_idx
    if idx < 0 or idx >= len(heap) or heap[idx] is not item:
        raise ValueError("item is not in this heap at its recorded index (Tor would assert)")
    item.heap_idx = -1
    last = heap.pop()
    if idx == len(heap):
        return
    heap[idx] = last
    last.heap_idx = idx
    heapify(heap, lt, idx)


def is_heap(heap: list[T], lt: Callable[[T, T], bool]) -> bool:
    """``smartlist_pqueue_assert_ok`` (smartlist.c:803-813) as a predicate: no child < parent."""
    return all(heap[i].heap_idx == i for i in range(len(heap))) and all(
        not lt(heap[i], heap[(i - 1) // 2]) for i in range(1, len(heap)))
