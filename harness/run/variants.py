"""Load and loss variants of a run: which can run here, and putting one in force.

A scenario's ``[[variants]]`` repeat the KIST/Vanilla comparison under other conditions
on the same network: more offered load (more parallel download loops per client, shorter
pauses) or shaping on every client's link (loss, rate, latency). Load needs nothing from
the backend; shaping needs the Docker backend's per-node namespaces and a kernel that can
do it. A variant that cannot run here is skipped with a reason the run prints and stores,
never silently.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from harness.config import BASE_VARIANT, Network, Variant
from harness.errors import StepError
from harness.network.backend import Backend, get_backend
from harness.network.running import NodeInfo, RunningNetwork, ShapingInForce
from harness.network.shaping import KernelShaping

log = logging.getLogger(__name__)
SHAPING_BACKENDS = ("docker", "swarm")  # each node has a network namespace of its own to shape



@dataclass(frozen=True)
class Phase:
    """One traffic phase of the run: the base condition or a variant, and whether it runs."""

    variant: Variant
    skipped: str = ""  # why it cannot run here; empty when it runs

    @property
    def name(self) -> str:
        return self.variant.name


def phases(net: Network, backend: str, kernel: Callable[[], KernelShaping] | None = None) -> list[Phase]:
    """The base condition, then every variant, each marked runnable or skipped with a reason.

    kernel returns what the kernel can shape (harness.network.shaping.detect); it is only
    asked on the Docker backend and only when a variant shapes.
    """
    out = [Phase(Variant(BASE_VARIANT))]
    for v in net.variants:
        out.append(Phase(v, _why_not(v, backend, kernel)))
    return out


def _why_not(v: Variant, backend: str, kernel: Callable[[], KernelShaping] | None) -> str:
    from harness.network.shaping import requested_kinds

    kinds = requested_kinds(v.client_shaping)
    if not kinds:
        return ""
    if backend not in SHAPING_BACKENDS:
        return (f"variant {v.name} ({v.describe()}) skipped: the {backend} backend cannot shape client links "
                "(its tor processes share the host's network namespace); run with --backend docker")
    if kernel is None:
        from harness.network.shaping import detect

        kernel = detect
    caps = kernel()
    missing = [k for k in kinds if not caps.supports(k)]
    if missing:
        return (f"variant {v.name} ({v.describe()}) skipped: this kernel cannot do {', '.join(missing)} "
                f"shaping ({caps.detail or 'probe failed'})")
    return ""


def client_load(load_scale: float) -> tuple[int, float]:
    """(parallel download loops per client, factor on pauses) giving load_scale times the offered load.

    ceil(x) loops each pausing ceil(x)/x as long offer x times one loop's downloads for a
    web client; a bulk client (no pauses) gets ceil(x) downloads in flight at once.
    """
    loops = max(1, math.ceil(load_scale - 1e-9))
    return loops, loops / load_scale


def combined_shaping(base: ShapingInForce | None, variant: Variant, node: str) -> ShapingInForce:
    """A client's base shaping with the variant's on top (the variant's wins where it sets a kind)."""
    s = variant.client_shaping
    return ShapingInForce(node,
                          s.rate_mbit if s.rate_mbit is not None else getattr(base, "rate_mbit", None),
                          s.loss_percent if s.loss_percent is not None else getattr(base, "loss_percent", None),
                          s.latency_ms if s.latency_ms is not None else getattr(base, "latency_ms", None))


@contextlib.contextmanager
def in_force(handle: RunningNetwork, variant: Variant, backend: Backend | None = None) -> Iterator[list[str]]:
    """Shaping of a (runnable) variant on every client's link for the block; base shaping after.

    Yields what was applied, one line per client, for the run's environment table. The
    backend (default: the handle's) does the re-shaping.
    """
    if not variant.client_shaping.requested:
        yield []
        return
    if handle.backend not in SHAPING_BACKENDS:
        raise StepError(f"variant {variant.name}: shaping needs the Docker backend (planning should have "
                        "skipped it)")
    backend = backend or get_backend(handle.backend)
    base = {s.node: s for s in handle.shaping}
    applied: list[NodeInfo] = []
    try:
        lines = []
        for node in handle.clients:
            applied.append(node)
            backend.reshape(handle, node, combined_shaping(base.get(node.name), variant, node.name))
            lines.append(f"{node.name}: {variant.describe()}")
        log.info("variant %s in force on %d client links", variant.name, len(applied))
        yield lines
    finally:
        for node in applied:
            try:
                backend.reshape(handle, node, base.get(node.name))
            except StepError as exc:  # never mask the original failure; the next phase would see it
                log.warning("could not restore %s's base shaping: %s", node.name, exc)
