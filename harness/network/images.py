"""Docker images for private networks, built without a registry when none answers.

base       kist-harness/base:bookworm: `docker pull debian:bookworm` where a pull works, else
           debootstrap (minbase) + `docker import` (the fallback is logged).
node-base  base + tor (its libraries, tor-gencert), iproute2, iptables, python3.
node       node-base + the patched tor binary + traffic.py.
swarm-worker  base + docker.io: a second engine in a container, a worker of a test swarm.
node-base and node are tagged and labelled by a hash of their inputs, so they are rebuilt
only when an input changes and reused otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from harness.errors import StepError
from harness.proc import run
from harness.traffic import clients

log = logging.getLogger(__name__)

BASE_TAG = "kist-harness/base:bookworm"
NODE_BASE_REPO = "kist-harness/node-base"
NODE_REPO = "kist-harness/node"
SWARM_WORKER_REPO = "kist-harness/swarm-worker"
OWNER_LABEL = "kist-harness.owner"
OWNER = "network"
INPUTS_LABEL = "kist-harness.inputs"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PATCHED_IN_IMAGE = "/opt/kist/bin/tor-patched"
STOCK_IN_IMAGE = "/usr/bin/tor"
TRAFFIC_IN_IMAGE = "/opt/kist/traffic.py"


def recipes_dir() -> Path:
    """The repository's docker/ directory (the image recipes)."""
    d = Path(__file__).resolve().parents[2] / "docker"
    if not (d / "node-base.Dockerfile").is_file():
        raise StepError(f"image recipes not found in {d}; run from a checkout (pip install -e .)")
    return d


def _exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], check=False, timeout=30).ok


def _image_id(tag: str) -> str:
    return run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], timeout=30).stdout.strip()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def inputs_hash(*parts: str | bytes) -> str:
    """A short, stable hash of an image's inputs (recipe text, parent id, file digests)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def ensure_base() -> str:
    """The Debian bookworm base image: present, pulled, or built with debootstrap."""
    if _exists(BASE_TAG):
        return BASE_TAG
    pulled = run(["docker", "pull", "debian:bookworm"], check=False, timeout=180)
    if pulled.ok:
        run(["docker", "tag", "debian:bookworm", BASE_TAG])
        log.info("base image: pulled debian:bookworm as %s", BASE_TAG)
        return BASE_TAG
    log.warning("no registry pull works (%s); building %s with debootstrap + docker import instead",
                pulled.tail(1).strip(), BASE_TAG)
    if shutil.which("debootstrap") is None:
        raise StepError("debootstrap is not installed and no image pull works; run `kist-harness host setup` "
                        "(it installs debootstrap) as root")
    root = Path(tempfile.mkdtemp(prefix="kist-debootstrap-"))
    try:
        run(["debootstrap", "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR], timeout=1800)
        run(["sh", "-c", f"tar -C {root} -c . | docker import "
                         f"--change 'LABEL {OWNER_LABEL}={OWNER}' - {BASE_TAG}"], timeout=600)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log.info("base image: built %s with debootstrap", BASE_TAG)
    return BASE_TAG


def _build(tag: str, dockerfile: Path, context: Path, inputs: str, build_args: dict[str, str]) -> None:
    argv = ["docker", "build", "-q", "-f", str(dockerfile), "-t", tag,
            "--label", f"{OWNER_LABEL}={OWNER}", "--label", f"{INPUTS_LABEL}={inputs}"]
    for k, v in build_args.items():
        argv += ["--build-arg", f"{k}={v}"]
    run([*argv, str(context)], timeout=1800)


def ensure_swarm_worker() -> str:
    """base + the Docker engine (harness.network.swarmworker); rebuilt when recipe or base change."""
    base = ensure_base()
    recipe = recipes_dir() / "swarm-worker.Dockerfile"
    inputs = inputs_hash(recipe.read_text(), _image_id(base))
    tag = f"{SWARM_WORKER_REPO}:{inputs}"
    if not _exists(tag):
        log.info("building %s (apt-get install docker.io in the image; takes a minute once)", tag)
        with tempfile.TemporaryDirectory(prefix="kist-img-") as ctx:
            _build(tag, recipe, Path(ctx), inputs, {"BASE": base})
    return tag


def ensure_node_base() -> str:
    """base + tor and the tools; rebuilt only when the recipe or the base image changes."""
    base = ensure_base()
    recipe = recipes_dir() / "node-base.Dockerfile"
    inputs = inputs_hash(recipe.read_text(), _image_id(base))
    tag = f"{NODE_BASE_REPO}:{inputs}"
    if _exists(tag):
        return tag
    log.info("building %s (apt-get install in the image; takes a minute once)", tag)
    with tempfile.TemporaryDirectory(prefix="kist-img-") as ctx:
        _build(tag, recipe, Path(ctx), inputs, {"BASE": base})
    return tag


def ensure_node(patched: Path | None) -> str:
    """The node image for this patched binary (or none); rebuilt only when an input changes."""
    node_base = ensure_node_base()
    recipe = recipes_dir() / "node.Dockerfile"
    traffic_py = Path(clients.__file__)
    inputs = inputs_hash(recipe.read_text(), node_base, _sha256_file(traffic_py),
                         _sha256_file(patched) if patched else "no-patched-tor")
    tag = f"{NODE_REPO}:{inputs}"
    if _exists(tag):
        return tag
    log.info("building %s (tor %s)", tag, patched or "stock only")
    with tempfile.TemporaryDirectory(prefix="kist-img-") as ctx:
        bindir = Path(ctx) / "bin"
        bindir.mkdir()
        if patched:
            shutil.copy2(patched, bindir / "tor-patched")
        shutil.copy2(traffic_py, Path(ctx) / "traffic.py")
        _build(tag, recipe, Path(ctx), inputs, {"NODE_BASE": node_base})
    return tag
