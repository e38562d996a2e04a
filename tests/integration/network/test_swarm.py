"""The Swarm backend on a single-node swarm of this machine's engine: the main job end to end
(services on an overlay, traffic, collection, replay with 0 divergences), bad placement,
and Ctrl-C mid-start (the two-node swarm: test_swarm_two_nodes.py); after each, no service, network, secret or config of the run is left
and the engine's swarm mode is as the test found it.

Needs a running Docker engine that is not a swarm worker (`kist-harness host setup`);
`docker swarm init` is done by the code under test when the engine is in no swarm. The
main job builds the patched tor (cached by `kist-harness build`).
"""

from __future__ import annotations

import os
import re
import signal
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.config import parse_scenario, scenario_path
from harness.errors import InputError
from harness.network import lifecycle
from harness.run.job import RunConfig, run

pytestmark = pytest.mark.integration

def test_main_job_on_a_single_node_swarm(engine: Any, tmp_path: Path) -> None:
    """The default network as services: 0 divergences, traffic in both arms, nothing left."""
    scenario = tmp_path / "default-swarm.toml"
    scenario.write_text(scenario_path("default").read_text().split("\n[[variants]]", 1)[0])
    out = run(RunConfig(scenario=str(scenario), backend="swarm", out=tmp_path / "out", duration_s=20,
                        period_s=10, seed=5))
    assert out.divergences == 0
    assert out.runs > 100 and out.decisions >= 10_000
    assert out.downloads > 0
    assert out.report is not None
    assert re.search(r"delayline: \d+ directed paths", out.report.read_text()), "the default's [links] not in force"
    assert re.search(r"KIST [1-9]\d*, Vanilla [1-9]", " ".join(out.phases)), out.phases
    assert out.network_dir is not None and not out.network_dir.exists()


def test_placement_naming_no_node_is_refused_before_any_service(engine: Any) -> None:
    text = scenario_path("basic").read_text().replace(
        '[[clients]]\nname = "client"', '[[clients]]\nname = "client"\nplacement = ["node.labels.zone==nowhere"]')
    net = parse_scenario(tomllib.loads(text), "basic-misplaced.toml")
    with pytest.raises(InputError) as err:
        lifecycle.start(net, "swarm")
    msg = str(err.value)
    assert "basic-misplaced.toml" in msg and "node.labels.zone==nowhere" in msg and "client0, client1" in msg
    assert "\n" not in msg and "Traceback" not in msg


def test_ctrl_c_while_services_start_leaves_nothing(engine: Any, tmp_path: Path, signal_when: Any) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    cli = Path(os.environ.get("VIRTUAL_ENV", "/root/venv")) / "bin" / "kist-harness"
    argv = [str(cli) if cli.exists() else "kist-harness", "net", "up", "basic", "--backend", "swarm"]
    t0 = time.monotonic()
    proc, lines, sent = signal_when(argv, re.compile(r"services placed"), signal.SIGINT, env=env, timeout=180)
    assert sent, "".join(lines[-20:])
    assert proc.returncode == 130, "".join(lines[-20:])
    assert time.monotonic() - t0 < 120
    assert not (tmp_path / "state" / "kist-harness" / "net" / "basic.json").exists()

