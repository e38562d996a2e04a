"""Lay out a run directory: per node a data dir with keys and a torrc (backend-neutral).

Both backends start tor from exactly these files; Docker bind-mounts them at the same
paths, so nothing here knows which backend will run the network.
"""

from __future__ import annotations

import logging
import shutil

from harness.config import Network, Role
from harness.errors import StepError
from harness.network import keys as keys_mod
from harness.network import torrc
from harness.network.keys import Keys
from harness.network.layout import Layout

log = logging.getLogger(__name__)


def tool(name: str) -> str:
    """Absolute path of a host tool the preparation needs, or a clear error."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise StepError(f"{name} is not installed; run `kist-harness host setup` (Debian package tor).")
    return path


def prepare(net: Network, layout: Layout) -> dict[str, Keys]:
    """Write keys and torrcs for every tor node; return the keys by node name."""
    for name in [n.name for n in net.nodes] + [s.name for s in net.fileservers]:
        layout.data_dir(name).mkdir(parents=True, exist_ok=True)
        layout.data_dir(name).chmod(0o700)  # tor refuses a group/world-readable DataDirectory
    auths = {a.name: (layout.data_dir(a.name), f"{layout.ip(a.name)}:{layout.ports.dir_port}")
             for a in net.authorities}
    relays = {r.name: layout.data_dir(r.name) for r in net.relays}
    keys = keys_mod.make_all(tool("tor"), tool("tor-gencert"), auths, relays)
    for node in net.nodes:
        if node.role is Role.CLIENT:
            keys.setdefault(node.name, Keys())
        layout.torrc(node.name).write_text(torrc.render(net, node, layout, keys))
    return keys
