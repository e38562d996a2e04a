"""A store that cannot grow (SQLite's page limit: the same SQLITE_FULL a full disk gives).

SQLite rolls a transaction back itself on SQLITE_FULL; the store's own ROLLBACK then
failed with "cannot rollback - no transaction is active" and hid the cause. The real
filesystem version is tests/integration/faults (a tmpfs) and `python -m harness.faults`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import StepError
from harness.store.db import Store, open_store
from harness.store.records import Context, Record


def test_a_full_store_names_the_cause_and_keeps_every_committed_batch(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    committed = 0
    with Store(path) as store:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 40}")
        batch = [(Context("r"), Record("BW", float(i), {"read": i, "written": i, "pad": "x" * 400}))
                 for i in range(50)]
        with pytest.raises(StepError) as err:
            for _ in range(1000):
                committed += store.write_batch(batch)
        assert "full" in str(err.value) and "cannot rollback" not in str(err.value)
        assert not store.db.in_transaction
    assert committed > 0
    with open_store(path, readonly=True) as store:
        assert store.count("BW") == committed
