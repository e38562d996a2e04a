"""Description + layout + keys -> one torrc per node, each option with the reason it is set.

Pure text generation (no files, no processes), so the torrcs are unit-tested as strings.
The voting schedule is the fastest tor accepts in a TestingTorNetwork (dirvote.h:
MIN_VOTE_SECONDS_TESTING = MIN_DIST_SECONDS_TESTING = 2, initial interval >= 5 and
dividing 30 minutes, later interval >= 10): it is what bounds bootstrap time.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.config import Network, Node, Role, Scheduler
from harness.network.keys import Keys
from harness.network.layout import Layout

# Voting schedule (seconds). See the module docstring for the limits.
INITIAL_VOTING_INTERVAL = 5
INITIAL_VOTE_DELAY = 2
INITIAL_DIST_DELAY = 2
VOTING_INTERVAL = 10
VOTE_DELAY = 2
DIST_DELAY = 2


def dir_authority_lines(net: Network, layout: Layout, keys: Mapping[str, Keys]) -> list[str]:
    """One DirAuthority line per authority: how every node finds the directory."""
    lines = []
    for a in net.authorities:
        k = keys[a.name]
        lines.append(f"DirAuthority {a.name} orport={layout.ports.or_port} no-v2 v3ident={k.v3ident} "
                     f"{layout.ip(a.name)}:{layout.ports.dir_port} {k.fingerprint}")
    return lines


def _routerset(net: Network, keys: Mapping[str, Keys], nodes: list[Node]) -> str:
    return ",".join(f"${keys[n.name].fingerprint}" for n in nodes) or "$" + "0" * 40


def render(net: Network, node: Node, layout: Layout, keys: Mapping[str, Keys]) -> str:
    """The complete torrc for one node."""
    ip = layout.ip(node.name)
    p = layout.ports
    data = layout.data_dir(node.name)
    out: list[str] = [
        f"# torrc for {node.name} ({node.role.value}) in network {net.name!r}; written by kist-harness.",
        "",
        "# A private network: relaxes reachability, address and timing rules (see testnet.inc).",
        "TestingTorNetwork 1",
        f"Nickname {node.name}",
        f"DataDirectory {data}",
        "# Run in the foreground: the backend tracks the process (pid or container).",
        "RunAsDaemon 0",
        f"Log notice file {layout.log_file(node.name)}",
        "# Addresses here are private test addresses; keep them readable in logs.",
        "SafeLogging 0",
        "# Exit at once on SIGTERM/SIGINT so teardown is quick.",
        "ShutdownWaitLength 0",
        "# One worker thread: many tor processes share two cores.",
        "NumCPUs 1",
        "# No GeoIP in a private network: parsing the files costs ~0.4 s CPU per tor at start.",
        'GeoIPFile ""',
        'GeoIPv6File ""',
        "# The harness and the collector read state and events here (cookie auth: no password).",
        f"ControlPort {ip}:{p.control_port}",
        "CookieAuthentication 1",
        f"CookieAuthFile {data / 'control_auth_cookie'}",
        "# Outgoing connections leave from the node's own address, so per-node shaping and",
        "# per-address accounting see the node's traffic.",
        f"OutboundBindAddress {ip}",
        "# Publish descriptors and bootstrap without waiting for real-world timings.",
        "AssumeReachable 1",
        "# The fewest relays a client needs before building circuits in a tiny network.",
        "PathsNeededToBuildCircuits 0.25",
        "# Fast votes: the initial schedule until the first consensus, then the regular one.",
        f"TestingV3AuthInitialVotingInterval {INITIAL_VOTING_INTERVAL}",
        f"TestingV3AuthInitialVoteDelay {INITIAL_VOTE_DELAY}",
        f"TestingV3AuthInitialDistDelay {INITIAL_DIST_DELAY}",
        f"V3AuthVotingInterval {VOTING_INTERVAL}",
        f"V3AuthVoteDelay {VOTE_DELAY}",
        f"V3AuthDistDelay {DIST_DELAY}",
        "TestingV3AuthVotingStartOffset 0",
        "# Every node trusts exactly this network's authorities.",
        *dir_authority_lines(net, layout, keys),
    ]
    if node.role is Role.CLIENT:
        out += [
            "# A client: SOCKS for traffic, no relaying.",
            f"SocksPort {ip}:{p.socks_port}",
            "ClientOnly 1",
        ]
        entry = node.entry_nodes
        if node.middle_nodes and not entry:
            # tor counts guards among MiddleNodes when EntryNodes is unset (nodelist.c,
            # compute_frac_paths_available), so a client pinned to a non-guard middle would
            # never bootstrap: name the guards explicitly.
            entry = tuple(n.name for n in net.relays if n.vote_guard and n.name not in node.middle_nodes)
        pins = [(opt, names) for opt, names in (("EntryNodes", entry), ("MiddleNodes", node.middle_nodes),
                                                 ("ExitNodes", node.exit_nodes)) if names]
        if pins:
            out.append("# Pinned path: this client's circuits cross the relays under test.")
            out += [f"{opt} " + ",".join(f"${keys[n].fingerprint}" for n in names) for opt, names in pins]
    else:
        out += _relay_lines(net, node, layout, keys)
    return "\n".join(out) + "\n"


def _relay_lines(net: Network, node: Node, layout: Layout, keys: Mapping[str, Keys]) -> list[str]:
    ip = layout.ip(node.name)
    p = layout.ports
    out = [
        "# A relay: no SOCKS, an ORPort and a DirPort on its own address.",
        "SocksPort 0",
        f"Address {ip}",
        f"ORPort {ip}:{p.or_port}",
        f"DirPort {ip}:{p.dir_port}",
        "# Relays in a test network are many per machine: do not refuse them for that.",
        "ContactInfo kist-harness private network",
        "# The scheduler under test (the arm) and its knobs.",
        f"Schedulers {node.scheduler.value}",
    ]
    if node.scheduler is not Scheduler.VANILLA:
        if node.kist_run_interval_ms is not None:
            out.append(f"KISTSchedRunInterval {node.kist_run_interval_ms} msec")
        if node.kist_sock_buf_size_factor is not None:
            out.append(f"KISTSockBufSizeFactor {node.kist_sock_buf_size_factor:g}")
    if node.bandwidth_rate_kib is not None:
        out += ["# Token-bucket limits: the relay's own rate limit, separate from link shaping.",
                f"BandwidthRate {node.bandwidth_rate_kib} KBytes"]
        burst = node.bandwidth_burst_kib or node.bandwidth_rate_kib
        out.append(f"BandwidthBurst {burst} KBytes")
    if node.constrained_sock_kib is not None:
        out += ["# Fixed, small socket buffers instead of the kernel's autotuning (constrained_sock_kib).",
                "ConstrainedSockets 1",
                f"ConstrainedSockSize {node.constrained_sock_kib} KBytes"]
    if node.role is Role.EXIT:
        out += ["# An exit that may reach the network's own file servers (private addresses).",
                "ExitRelay 1",
                "ExitPolicyRejectPrivate 0",
                "ExitPolicyRejectLocalInterfaces 0",
                "ExitPolicy accept *:*"]
    else:
        out += ["# Not an exit: carries traffic only inside the network.",
                "ExitRelay 0",
                "ExitPolicy reject *:*"]
    if node.role is Role.AUTHORITY:
        out += _authority_lines(net, keys)
    return out


def _authority_lines(net: Network, keys: Mapping[str, Keys]) -> list[str]:
    exits = list(net.by_role(Role.EXIT))
    guards = [n for n in net.relays if n.vote_guard]
    out = [
        "# A v3 directory authority of this network.",
        "AuthoritativeDirectory 1",
        "V3AuthoritativeDirectory 1",
        "# Flags from the description (roles), not from measured uptime or bandwidth,",
        "# so the first consensus already has usable guards and exits.",
        f"TestingDirAuthVoteExit {_routerset(net, keys, exits)}",
        "TestingDirAuthVoteExitIsStrict 1",
        f"TestingDirAuthVoteGuard {_routerset(net, keys, guards)}",
        "TestingDirAuthVoteGuardIsStrict 1",
        f"TestingDirAuthVoteHSDir {_routerset(net, keys, list(net.relays))}",
        "# Every relay is on one machine: count them all as reachable at once.",
        "TestingMinExitFlagThreshold 0",
        "TestingMinFastFlagThreshold 0",
    ]
    if net.vote_stable:
        out += ["# Stable for every relay at once (no uptime needed): clients can build conflux legs,",
                "# which need Stable on every hop (conflux_pool.c:1137).",
                "AuthDirVoteStableGuaranteeMinUptime 0"]
    if net.consensus_params:
        out.append(f"ConsensusParams {' '.join(f'{k}={v}' for k, v in net.consensus_params)}")
    return out
