"""A tor outside a network's description that joins it as a relay (e.g. a host deployed over SSH).

The DirAuthority lines are read back from the torrc the network wrote for one of its
authorities (``torrc.render``), so a joining relay trusts exactly what every node trusts
and nothing here re-derives keys. The result is plain torrc text, for example the
``extra_torrc`` file of a host in a ``harness.remote`` inventory.
"""

from __future__ import annotations

from harness.config import Role
from harness.errors import StepError
from harness.network.layout import Layout, Ports
from harness.network.running import RunningNetwork


def authority_lines(running: RunningNetwork) -> list[str]:
    """The network's ``DirAuthority`` lines, as its own nodes have them."""
    authorities = running.by_role(Role.AUTHORITY)
    if not authorities:
        raise StepError(f"network {running.name} has no authorities to join")
    # paths in a layout depend on the run directory alone
    path = Layout(running.run_dir, Ports(0), ()).torrc(authorities[0].name)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StepError(f"network {running.name}: cannot read {path} ({exc.strerror}); is the "
                        "network still up on this machine?") from exc
    lines = [line for line in text.splitlines() if line.startswith("DirAuthority ")]
    if len(lines) != len(authorities):
        raise StepError(f"{path} has {len(lines)} DirAuthority lines for {len(authorities)} authorities")
    return lines


def relay_torrc(running: RunningNetwork, address: str, or_port: int) -> str:
    """torrc lines that make a tor a (non-exit) relay of ``running`` on ``address:or_port``.

    Identity, data directory and control settings stay the host's: this is a layer on top.
    """
    return "\n".join([
        f"# joins private network {running.name} (run {running.run_id}); written by kist-harness",
        "# A private network: relaxed reachability, address and timing rules (see testnet.inc).",
        "TestingTorNetwork 1",
        "DisableNetwork 0",
        *authority_lines(running),
        "# Reachable on the network's own bridge; skip the self-test a tiny network answers late.",
        f"Address {address}",
        f"ORPort {address}:{or_port}",
        "AssumeReachable 1",
        "# The fewest relays a tor needs before building circuits in a tiny network.",
        "PathsNeededToBuildCircuits 0.25",
        "ExitRelay 0",
        "ExitPolicy reject *:*",
    ]) + "\n"
