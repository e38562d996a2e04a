"""Private Tor networks: a description becomes running tor processes (local or Docker).

Use ``with harness.network.up(load_scenario("default"), "docker", tor_path) as net:``;
``net`` is a frozen RunningNetwork with per-node control addresses, cookies, fingerprints.
"""

from harness.network.lifecycle import start, teardown, up
from harness.network.running import NodeInfo, RunningNetwork, ServerInfo, ShapingInForce

__all__ = ["NodeInfo", "RunningNetwork", "ServerInfo", "ShapingInForce", "start", "teardown", "up"]
