"""Identity keys made before any tor starts, so every torrc can name every fingerprint.

Authorities get v3 keys from tor-gencert (their v3ident goes into every DirAuthority
line); every relay gets its RSA identity from `tor --list-fingerprint`, which also lets
the authorities vote flags for explicit fingerprints instead of guessing from nicknames.
Keys are made in parallel and cached (by node name, and for authorities by address):
tor-gencert's 3072-bit RSA key takes seconds, a copy takes milliseconds. A private test
network loses nothing by reusing identities across runs; entries older than a week are
remade so the ed25519 signing certificates (valid 30 days) never expire mid-run.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.errors import StepError
from harness.proc import run

log = logging.getLogger(__name__)

_FP_RE = re.compile(r"^(\S+) ((?:[0-9A-F]{4} ?){10})$", re.M)
_CERT_FP_RE = re.compile(r"^fingerprint ([0-9A-F]{40})$", re.M)


@dataclass(frozen=True)
class Keys:
    """A node's identities: RSA fingerprint (relays) and v3 identity (authorities)."""

    fingerprint: str | None = None
    v3ident: str | None = None


def make_authority_v3(tor_gencert: str, dir_address: str, data_dir: Path) -> str:
    """Create the authority's v3 identity/signing keys and certificate; return its v3ident."""
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    run([tor_gencert, "--create-identity-key", "--passphrase-fd", "0", "-m", "12",
         "-a", dir_address,
         "-i", str(keys / "authority_identity_key"),
         "-s", str(keys / "authority_signing_key"),
         "-c", str(keys / "authority_certificate")],
        input_text="\n", timeout=120)
    cert = (keys / "authority_certificate").read_text()
    m = _CERT_FP_RE.search(cert)
    if not m:
        raise StepError(f"tor-gencert wrote {keys / 'authority_certificate'} without a fingerprint line")
    return m.group(1)


def make_relay_identity(tor: str, nickname: str, data_dir: Path) -> str:
    """Create the relay's identity keys in data_dir/keys; return its RSA fingerprint (40 hex)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    res = run([tor, "--ignore-missing-torrc", "-f", "/dev/null", "--quiet", "--list-fingerprint",
               "--DataDirectory", str(data_dir), "--ORPort", "1", "--Nickname", nickname],
              timeout=60)
    m = _FP_RE.search(res.stdout)
    if not m:
        raise StepError(f"tor --list-fingerprint printed no fingerprint for {nickname}:\n{res.tail()}")
    return m.group(2).replace(" ", "")


CACHE_MAX_AGE_S = 7 * 24 * 3600


def cache_dir() -> Path:
    """Where generated keys are kept between runs (read when called, not at import)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kist-harness" / "keys"


def _cached(entry: Path, data_dir: Path, make: Callable[[Path], str]) -> str:
    """Copy keys from the cache entry into data_dir/keys, making the entry first if needed.

    make(dir) writes dir/keys/* and returns the identity; it runs in a private directory so
    an authority's v3 keys and relay keys, made concurrently, never mix.
    """
    stamp = entry / "id"
    if not (stamp.is_file() and time.time() - stamp.stat().st_mtime < CACHE_MAX_AGE_S):
        tmp = entry.with_name(f"{entry.name}.tmp{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "id").write_text(make(tmp) + "\n")
        shutil.rmtree(entry, ignore_errors=True)
        try:
            tmp.rename(entry)
        except OSError:  # another process filled the entry first: use ours, drop it after
            entry = tmp
    ident = (entry / "id").read_text().strip()
    shutil.copytree(entry / "keys", data_dir / "keys", dirs_exist_ok=True)
    (data_dir / "keys").chmod(0o700)
    if entry.name.endswith(f"{os.getpid()}-{threading.get_ident()}"):
        shutil.rmtree(entry, ignore_errors=True)
    return ident


def make_all(tor: str, tor_gencert: str, authorities: dict[str, tuple[Path, str]],
             relays: dict[str, Path]) -> dict[str, Keys]:
    """Keys for every relay (name -> data dir) and authority (name -> (data dir, dir address))."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=8) as pool:
        v3 = {n: pool.submit(_cached, cache / f"v3-{n}-{a.replace(':', '-')}", d,
                             functools.partial(make_authority_v3, tor_gencert, a))
              for n, (d, a) in authorities.items()}
        fps = {n: pool.submit(_cached, cache / f"relay-{n}", d, functools.partial(make_relay_identity, tor, n))
               for n, d in relays.items()}
        out = {n: Keys(fingerprint=f.result()) for n, f in fps.items()}
        for n, f in v3.items():
            out[n] = Keys(fingerprint=out[n].fingerprint, v3ident=f.result())
    log.debug("made keys for %d relays (%d authorities)", len(relays), len(authorities))
    return out
