"""Many processes opening one new store at the same moment (a fleet's shards do)."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

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
