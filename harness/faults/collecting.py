"""A collector in this process, on a thread, against the lab's relay: what two faults watch."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from harness.control.auth import Credentials
from harness.control.collector import CollectConfig, Collector
from harness.control.transport import TcpTransport
from harness.faults.common import Lab
from harness.store.db import Store, open_store
from harness.store.records import Kind


class Running:
    """``with Running(lab, store, run_id) as r:`` collects until the block ends."""

    def __init__(self, lab: Lab, store_path: Path, run_id: str) -> None:
        node = lab.node
        self.store = Store(store_path)
        config = CollectConfig(run_id=run_id, duration_s=None, snapshot_every_s=5.0, flush_every_s=0.2,
                               backoff_first_s=0.25, backoff_max_s=4.0, stall_s=10.0, parse_workers=1,
                               patch_hash=lab.patch_hash)
        self.collector = Collector(TcpTransport(node.control_host, node.control_port),
                                   Credentials(node.cookie_path), self.store, config)
        self.thread = threading.Thread(target=self._run, name="fault-collector", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.collector.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the figure
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.collector.stop()
        self.thread.join(120)
        self.store.close()

    def wait_connected(self, gaps: int, timeout: float = 60.0) -> bool:
        """Until the collector is connected again after ``gaps`` gaps."""
        deadline = time.monotonic() + timeout
        p = self.collector.progress
        while time.monotonic() < deadline:
            if p.connected and p.gaps >= gaps and self.collector._controller is not None:
                return True
            time.sleep(0.1)
        return False


def gaps_of(store_path: Path, run_id: str) -> list[dict[str, Any]]:
    with open_store(store_path, readonly=True) as s:
        return [dict(r.data) for _c, r in s.records(Kind.GAP, run_id=run_id)]


def stored_of(store_path: Path, run_id: str) -> int:
    with open_store(store_path, readonly=True) as s:
        return sum(1 for _ in s.records(run_id=run_id))
