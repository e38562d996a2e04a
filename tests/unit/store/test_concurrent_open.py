"""Many processes opening one new store at the same moment (a fleet's shards do)."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

from harness.errors import InputError
from harness.store.db import Store


def _open(path: str, go: object, out: object) -> None:
    go.wait()  # type: ignore[attr-defined]
    try:
        Store(path).close()
        out.put("ok")  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the test reports what went wrong
        out.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_store_together_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    for trial in range(5):
        path = tmp_path / f"s{trial}.db"
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(str(path), go, out)) for _ in range(6)]
        for p in procs:
            p.start()
        go.set()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        assert results == ["ok"] * len(procs), results


def _create_many(directory: str, n: int) -> None:
    for i in range(n):
        Store(Path(directory) / f"n{i}.db").close()


def test_a_reader_never_sees_a_store_without_its_tables(tmp_path: Path) -> None:
    """A reader polling for a store being created (the fleet's SSH test did, and CI once
    saw "no such table: meta") opens it whole or not at all."""
    n = 150
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_create_many, args=(str(tmp_path), n))
    writer.start()
    failures = []
    try:
        for i in range(n):
            path = tmp_path / f"n{i}.db"
            while not path.exists():
                if not writer.is_alive() and not path.exists():
                    raise AssertionError(f"the writer stopped before creating {path.name}")
            try:
                Store(path, readonly=True).close()
            except InputError as exc:
                failures.append(f"{path.name}: {exc}")
    finally:
        writer.join(60)
    assert not failures, failures[:3]
    assert not list(tmp_path.glob(".*creating*")), "a temporary store was left behind"
