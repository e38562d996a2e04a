"""Bring a described network up, wait until it carries data, and take it down again.

`up()` is the context manager the main job uses; `start()`/`teardown()` are the halves
`net up` and `net down` use across processes. A failure or Ctrl-C anywhere in `start()`
stops what was started and removes the run directory before the error propagates.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from harness import host
from harness.config import Binary, Network
from harness.errors import InputError, StepError
from harness.network import ready
from harness.network import running as running_mod
from harness.network.backend import backend_class, get_backend
from harness.network.prepare import prepare, tool
from harness.network.running import RunningNetwork

log = logging.getLogger(__name__)

RUN_PREFIX = "kist-net-"


def resolve_binaries(net: Network, patched: Path | None) -> dict[Binary, Path]:
    """Map the binaries the scenario asks for to files; stock is Debian's tor."""
    out: dict[Binary, Path] = {}
    if Binary.STOCK in net.binaries():
        out[Binary.STOCK] = Path(tool("tor"))
    if Binary.PATCHED in net.binaries():
        if patched is None:
            names = ", ".join(n.name for n in net.nodes if n.binary is Binary.PATCHED)
            raise InputError(f"scenario {net.source}: nodes {names} run the patched tor, but no binary was "
                             "given: pass --tor PATH (e.g. what `kist-harness build` printed) or set "
                             "binary = \"stock\" in their tables.")
        if not patched.is_file():
            raise InputError(f"--tor {patched}: no such file")
        out[Binary.PATCHED] = patched.resolve()
    return out


def start(net: Network, backend: str = "local", patched: Path | None = None,
          progress: ready.Progress | None = None, persist: bool = False) -> RunningNetwork:
    """Start the network and return once every node is bootstrapped and circuits carry data."""
    host.require("network")  # tor-gencert, ip, iptables: installed as `host setup` does, or named
    if backend in ("docker", "swarm"):
        host.require("docker")
    binaries = resolve_binaries(net, patched)
    impl = get_backend(backend)
    shaping = impl.plan_shaping(net)  # refuse impossible shaping before anything starts
    run_id = f"{net.name}-{uuid.uuid4().hex[:8]}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{run_id}-"))
    log.info("network %s: run %s in %s (backend %s; tor %s)", net.name, run_id, run_dir, backend,
             binaries_summary(binaries))
    handle: RunningNetwork | None = None
    try:
        t0 = time.monotonic()
        impl.begin(run_id, binaries)
        layout = impl.make_layout(net, run_dir)
        keys = prepare(net, layout)
        t1 = time.monotonic()
        handle = impl.start(net, layout, keys, binaries, run_id, shaping)
        t_launch = time.monotonic()
        if persist:
            running_mod.save(handle)  # early, so `net down` finds a half-started network too

        def dead() -> list[str]:
            assert handle is not None
            return impl.dead(handle)

        ready.wait_bootstrapped(handle, net.bootstrap_timeout_s, dead, progress)
        t2 = time.monotonic()
        ready.verify_circuits(handle, net.bootstrap_timeout_s, dead)
        t3 = time.monotonic()
        handle = replace(handle, timings={
            "configure_s": round(t1 - t0, 3), "start_bootstrap_s": round(t2 - t1, 3),
            "launch_s": round(t_launch - t1, 3), "bootstrap_s": round(t2 - t_launch, 3),
            "verify_s": round(t3 - t2, 3)}, binaries={b.value: str(p) for b, p in binaries.items()})
        if persist:
            running_mod.save(handle)
        log.info("network %s up: configure %.1f s, start+bootstrap %.1f s, verify %.1f s",
                 net.name, t1 - t0, t2 - t1, t3 - t2)
        return handle
    except BaseException:
        log.info("network %s: start failed or interrupted; cleaning up", net.name)
        try:
            impl.stop()
            if handle is not None:
                impl.teardown(handle)
        except Exception as exc:  # keep the original error; say what may be left
            log.warning("cleanup of %s incomplete (%s); run `kist-harness net down %s --force`",
                        run_id, exc, net.name)
        shutil.rmtree(run_dir, ignore_errors=True)
        if persist:
            running_mod.state_file(net.name).unlink(missing_ok=True)
        raise


def teardown(handle: RunningNetwork) -> list[str]:
    """Stop every node of a network from its handle; remove its run dir and state file."""
    done = backend_class(handle.backend).teardown(handle)
    if handle.run_dir.name.startswith(RUN_PREFIX):  # never remove a directory we did not make
        shutil.rmtree(handle.run_dir, ignore_errors=True)
        done.append(f"removed {handle.run_dir}")
    state = running_mod.state_file(handle.name)
    if state.is_file() and RunningNetwork.from_json(state.read_text()).run_id == handle.run_id:
        state.unlink()
    return done


@contextmanager
def up(net: Network, backend: str = "local", patched: Path | None = None,
       progress: ready.Progress | None = None) -> Iterator[RunningNetwork]:
    """A ready network for the duration of the block; gone afterwards, whatever happened."""
    handle = start(net, backend, patched, progress)
    try:
        yield handle
    finally:
        teardown(handle)


def check_alive(handle: RunningNetwork) -> None:
    """Raise StepError naming every node that has stopped, with its last log lines."""
    gone = dead_nodes(handle)
    if gone:
        raise StepError(ready.node_died_message(handle, gone, "during the run"))


def dead_nodes(handle: RunningNetwork) -> list[str]:
    """Names of nodes no longer running (from the handle alone)."""
    return get_backend(handle.backend).dead(handle)


def binaries_summary(binaries: Mapping[Binary, Path]) -> str:
    return ", ".join(f"{b.value}={p}" for b, p in binaries.items())
