"""The Swarm backend on a two-node swarm made on this machine: a second Docker engine in a
container built from the project's base image joins as a worker (harness.network.swarmworker),
the default network is placed on both nodes, and the main job runs end to end with 0
divergences; afterwards nothing of the run is left on either node and the engine is in no
swarm again. Skipped on an engine that is already in a swarm (it is not this test's to reshape).
About 2.5 minutes; builds the worker image once (~40 s).
"""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path
from typing import Any

import pytest

from harness.config import scenario_path
from harness.run.job import RunConfig, run

pytestmark = pytest.mark.integration

OWNED = {"label": "kist-harness.owner=network"}


# The default network spread over both nodes: the arms' middles and one client of each arm on
# the worker; authorities, guard, the other two clients and the file server on the manager; the
# exits (one group) wherever the swarm spreads them.
ON_WORKER = 'placement = ["node.labels.zone==b"]'
ON_MANAGER = 'placement = ["node.role==manager"]'
SPREAD = {'[authorities]\n': ON_MANAGER, 'name = "guard"\n': ON_MANAGER, 'name = "kist"': ON_WORKER,
          'name = "vanilla"': ON_WORKER, 'name = "webk"\n': ON_WORKER, 'name = "bulkv"\n': ON_WORKER,
          'name = "webv"\n': ON_MANAGER, 'name = "bulkk"\n': ON_MANAGER, 'name = "server"\n': ON_MANAGER}


def _spread(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        out.append(line)
        for key, place in SPREAD.items():
            if line.startswith(key.rstrip("\n")):
                out.append(place + "\n")
    return "".join(out)


def test_main_job_on_a_two_node_swarm(engine: Any, tmp_path: Path) -> None:
    """A second engine in a container joins as a worker; nodes placed on both; 0 divergences."""
    from harness.network import swarmworker

    if (engine.info().get("Swarm") or {}).get("LocalNodeState") != "inactive":
        pytest.skip("the two-node swarm is made on an engine in no swarm")
    scenario = tmp_path / "default-two-nodes.toml"
    scenario.write_text(_spread(scenario_path("default").read_text().split("\n[[variants]]", 1)[0]))
    with swarmworker.two_node_swarm({"kist-harness.test": "swarm"}) as two:
        worker = importlib.import_module("docker").DockerClient(base_url=two.worker_engine, timeout=60)
        since = int(time.time()) - 1
        out = run(RunConfig(scenario=str(scenario), backend="swarm", out=tmp_path / "out", duration_s=20,
                            period_s=10, seed=5))
        # which nodes the worker's engine ran: its container starts, with the swarm's labels
        events = worker.events(since=since, until=int(time.time()) + 1, decode=True,
                               filters={"type": "container", "event": "start"})
        on_worker = {e["Actor"]["Attributes"].get("com.docker.swarm.service.name", "").rsplit("-", 1)[-1]
                     for e in events}
        assert worker.containers.list(all=True, filters=OWNED) == []  # gone on the worker too
        assert worker.networks.list(filters=OWNED) == []
        worker.close()
    assert {"kist", "vanilla", "webk", "bulkv"} <= on_worker  # the exits go where the swarm spreads them
    assert not on_worker & {"auth0", "auth1", "auth2", "guard", "webv", "bulkk", "server"}
    assert out.divergences == 0
    assert out.report is not None
    assert re.search(r"delayline: \d+ directed paths", out.report.read_text()), "the default's [links] not in force"
    assert out.runs > 100 and out.decisions >= 10_000
    assert re.search(r"KIST [1-9]\d*, Vanilla [1-9]", " ".join(out.phases)), out.phases
