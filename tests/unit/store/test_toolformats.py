"""Export for other tools: OnionPerf 4.0 analysis JSON (validated with jsonschema) and
oniontrace logs (parsed by the field positions oniontracetools reads).

The published schema (torproject/onionperf, schema/onionperf-4.0.json) is not vendored here;
ONIONPERF_4_0 below restates its required fields, types and patterns for what the export writes
(draft-07, validated by jsonschema). Set KIST_ONIONPERF_SCHEMA to a copy of the published file to
validate against it as well.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness.cli import main
from harness.control.events import parse_line
from harness.store.db import open_store
from harness.store.records import Context, Kind, Record
from harness.store.toolformats import circ_line, onionperf_analysis

_S = {"type": "string"}
_N = {"type": "number"}
_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}
_PCT = {"type": "string", "pattern": r"^[0-9]+\.[0-9]+%$"}
_TIME_KEYS = ["created-ts", "now-ts", "usecs-to-checksum-recv", "usecs-to-checksum-send", "usecs-to-command",
              "usecs-to-first-byte-recv", "usecs-to-first-byte-send", "usecs-to-last-byte-recv",
              "usecs-to-last-byte-send", "usecs-to-proxy-choice", "usecs-to-proxy-init", "usecs-to-proxy-request",
              "usecs-to-proxy-response", "usecs-to-response", "usecs-to-socket-connect", "usecs-to-socket-create"]


def _obj(required: list[str], props: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props, **kw}


_STREAM = _obj(
    ["byte_info", "is_complete", "is_error", "is_success", "stream_id", "stream_info", "time_info",
     "transport_info", "unix_ts_end", "unix_ts_start"],
    {"byte_info": _obj(["payload-bytes-recv", "payload-bytes-send", "payload-progress-recv", "payload-progress-send",
                        "total-bytes-recv", "total-bytes-send"],
                       {"payload-bytes-recv": _DIGITS, "payload-bytes-send": _DIGITS, "payload-progress-recv": _PCT,
                        "payload-progress-send": _PCT, "total-bytes-recv": _DIGITS, "total-bytes-send": _DIGITS}),
     "elapsed_seconds": {"type": "object", "properties": {
         "payload_bytes_recv": {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"},
                                "additionalProperties": _N},
         "payload_progress_recv": {"type": "object", "propertyNames": {"pattern": r"^[01]\.[0-9]$"},
                                   "additionalProperties": _N}}},
     "is_complete": {"type": "boolean"}, "is_error": {"type": "boolean"}, "is_success": {"type": "boolean"},
     "stream_id": _S,
     "stream_info": _obj(["error", "id", "name", "peername", "recvsize", "recvstate", "sendsize", "sendstate",
                          "vertexid"], {k: _S for k in ("error", "id", "name", "peername", "recvsize", "recvstate",
                                                        "sendsize", "sendstate", "vertexid")}),
     "time_info": _obj(_TIME_KEYS, {k: _S for k in _TIME_KEYS}),
     "transport_info": _obj(["error", "fd", "local", "proxy", "remote", "state"],
                            {k: _S for k in ("error", "fd", "local", "proxy", "remote", "state")}),
     "unix_ts_end": _N, "unix_ts_start": _N})

ONIONPERF_4_0: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema",
    **_obj(["data", "type", "version"], {
        "data": {"type": "object", "propertyNames": {"pattern": "^[A-Za-z0-9-]+$"},
                 "additionalProperties": _obj(["measurement_ip", "tgen", "tor"], {
                     "measurement_ip": _S,
                     "tgen": _obj(["streams"], {"streams": {"type": "object", "additionalProperties": _STREAM}}),
                     "tor": _obj(["circuits", "streams"], {
                         "circuits": {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"}},
                         "streams": {"type": "object", "propertyNames": {"pattern": "^[0-9]+$"}}})})},
        "type": {"type": "string", "const": "onionperf"},
        "version": {"type": "string", "pattern": r"^4\.[0-9]+$"}})}

FP = "A1130635A0CDA6F60C276FBF6994EFBD4ECADAB1"
CIRC_WIRE = (f"650 CIRC 7 BUILT ${FP}~relay1,$B2230635A0CDA6F60C276FBF6994EFBD4ECADAB2~relay2 "
             "BUILD_FLAGS=NEED_CAPACITY PURPOSE=GENERAL TIME_CREATED=2026-12-01T10:00:00.250000")


def _download(client: str, size: int, ttfb: float | None, ttlb: float | None, outcome: str, start: float) -> Record:
    return Record(Kind.DOWNLOAD, start, {"client": client, "profile": "web", "size": size, "start": start,
                                         "ttfb_s": ttfb, "ttlb_s": ttlb,
                                         "received": size if outcome == "ok" else 1000, "outcome": outcome})


def _store(path: Path) -> Path:
    t0 = 1_796_119_200.0  # 2026-12-01 10:00 UTC
    with open_store(path) as s:
        items = []
        for i, arm in enumerate(("KIST", "Vanilla", "KIST", "straddle")):
            ctx = Context("run1", "client/web 1", arm=arm)
            items.append((ctx, _download("client/web 1", 327680, 0.2 + i / 10, 1.0 + i / 10, "ok", t0 + i)))
        items.append((Context("run1", "c2", arm="Vanilla"), _download("c2", 5242880, 0.5, None, "timeout", t0 + 9)))
        relay = Context("run1", FP, arm="KIST")
        for sec in range(3):
            rec = parse_line(f"650 BW {1000 * sec} {2000 * sec}", t0 + 1 + sec)
            items.append((relay, rec))
        circ = parse_line(CIRC_WIRE, t0 + 0.5)
        assert circ.kind == "CIRC", circ
        items.append((relay, circ))
        s.write_batch(items)
    return path


def test_onionperf_export_validates_and_carries_the_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(tmp_path / "s.db")
    assert main(["export", str(store), "--out", str(tmp_path / "x")]) == 0
    assert "tools: 4 downloads as OnionPerf 4.0 analysis JSON, 1 relay logs" in capsys.readouterr().out
    docs = {arm: json.loads((tmp_path / "x" / arm / "onionperf.analysis.json").read_text())
            for arm in ("KIST", "Vanilla")}
    schemas = [ONIONPERF_4_0]
    if os.environ.get("KIST_ONIONPERF_SCHEMA"):
        schemas.append(json.loads(Path(os.environ["KIST_ONIONPERF_SCHEMA"]).read_text()))
    for schema in schemas:
        jsonschema.Draft7Validator.check_schema(schema)
        for doc in docs.values():
            jsonschema.Draft7Validator(schema).validate(doc)
    kist = docs["KIST"]["data"]["client-web-1"]
    assert kist["kist_harness_name"] == "client/web 1"
    streams = sorted(kist["tgen"]["streams"].values(), key=lambda s: s["unix_ts_start"])
    assert [s["time_info"]["usecs-to-last-byte-recv"] for s in streams] == ["1000000", "1200000"]
    assert streams[0]["elapsed_seconds"]["payload_bytes_recv"] == {"327680": 1.0}
    assert kist["tgen"]["stream_summary"]["time_to_last_byte_recv"]["327680"] == {"1796119201": [1.0],
                                                                                 "1796119203": [1.2]}
    failed = next(iter(docs["Vanilla"]["data"]["c2"]["tgen"]["streams"].values()))
    assert (failed["is_success"], failed["is_error"], failed["stream_info"]["error"]) == (False, True, "TIMEOUT")
    assert failed["byte_info"]["payload-progress-recv"] == "0.0%"
    assert (tmp_path / "x" / "KIST" / "tgen.analysis.json").resolve() == \
        (tmp_path / "x" / "KIST" / "onionperf.analysis.json").resolve()
    # a document that breaks the schema is caught: the validation can fail
    bad = json.loads(json.dumps(docs["KIST"]))
    del next(iter(bad["data"]["client-web-1"]["tgen"]["streams"].values()))["time_info"]["usecs-to-first-byte-recv"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, ONIONPERF_4_0)


def test_oniontrace_log_has_the_fields_where_oniontracetools_reads_them(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.db")
    assert main(["export", str(store), "--out", str(tmp_path / "x"), "--tornettools-names"]) == 0
    (log,) = (tmp_path / "x" / "KIST").glob("*.oniontrace.*.stdout")
    assert log.name == f"relay{FP}.oniontrace.1000.stdout"
    lines = log.read_text().splitlines()
    start = lines[0].split()
    assert start[5:8] == ["Starting", "OnionTrace", "v1.0.0"] and start[10] == f"relay{FP}"
    assert "Bootstrapped 100" in lines[1]
    bw = [line.split() for line in lines if " 650 BW " in line]
    # oniontracetools: parts[2] the unix time, parts[8] bytes read, parts[9] bytes written
    assert [(int(float(p[2])), int(p[8]), int(p[9])) for p in bw] == \
        [(1796119201, 0, 0), (1796119202, 1000, 2000), (1796119203, 2000, 4000)]
    circ = next(line for line in lines if " 650 CIRC " in line)
    assert circ.split("Logger: ")[1] == CIRC_WIRE  # the stored event back on the wire, verbatim
    assert lines.index(circ) == 2                  # in time order (it arrived first)
    perf = json.loads((tmp_path / "x" / "KIST" / "onionperf.analysis.json").read_text())
    assert list(perf["data"]) == ["perfclient1exit"]


def test_report_writes_the_tools_dir_and_can_redo_it(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.db")
    for _ in range(2):  # the second report replaces the first, tools/ included
        assert main(["report", str(store), "--no-replay", "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "tools" / "Vanilla" / "onionperf.analysis.json").is_file()


def test_circ_line_without_optional_fields() -> None:
    assert circ_line({"id": "3", "status": "LAUNCHED"}) == "650 CIRC 3 LAUNCHED"
    assert onionperf_analysis([])["data"] == {}
