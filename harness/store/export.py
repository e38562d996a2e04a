"""Export of stored KIST_RUN records to the JSON-lines trace `kist-harness model replay` reads."""

from __future__ import annotations

import logging
from pathlib import Path

from harness.errors import InputError, StepError
from harness.store.db import Store
from harness.store.records import KIST_RUN

log = logging.getLogger(__name__)


def export_runs(store: Store, out: Path, *, run_id: str | None = None) -> int:
    """Write every KIST_RUN record (of one run id, or all) as JSON lines; return the count.

    The store keeps the wire payload verbatim, so the export goes through the same
    ``kist_reference.trace`` parser as collection and loses nothing. Written to a temp
    file and renamed, so a failed export leaves no half file.
    """
    from kist_reference import trace

    tmp = out.with_name(f".{out.name}.tmp")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for _ctx, rec in store.records(KIST_RUN, run_id=run_id):
                try:
                    if rec.raw is None:  # the collector always keeps the payload
                        raise trace.TraceError("no payload stored with it")
                    run = trace.parse_wire(rec.raw)
                except trace.TraceError as exc:  # the collector stores such a line as an error record
                    raise InputError(f"store {store.path}: a KIST_RUN record does not parse ({exc}); the "
                                     "store is damaged or was not written by kist-harness") from None
                fh.write(trace.to_json(run))
                fh.write("\n")
                n += 1
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StepError(f"cannot write {out}: {exc.strerror}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written export
        raise
    log.info("exported %d KIST runs to %s", n, out)
    return n
