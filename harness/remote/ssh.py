"""SSH connections to relay hosts (paramiko): verified host keys, commands as Results.

Host keys are checked against the inventory's known_hosts file and an unknown key is
refused (paramiko's RejectPolicy behaviour, with a message saying what to check); a
changed key is always refused. Accepting a new key needs ``accept_new_host_key=True``
and is logged with its fingerprint. Private keys, cookies and passwords are never logged:
only paths and public fingerprints are.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from harness.errors import CommandFailed, HarnessError, StepError
from harness.proc import Result
from harness.remote.inventory import Host
from harness.signals import raise_if_stopped

log = logging.getLogger(__name__)

POLL_S = 0.01
EOF_GRACE_S = 2.0   # after a command exits, how long its channel may take to reach EOF
T = TypeVar("T")


class HostKeyRefused(StepError):
    """The server's host key is unknown or differs from known_hosts."""


class HostsFailed(StepError):
    """Some hosts of a parallel operation failed; ``results`` holds the others'."""

    def __init__(self, failures: dict[str, HarnessError], results: dict[str, Any]) -> None:
        lines = [f"{len(failures)} of {len(failures) + len(results)} hosts failed: "
                 + ", ".join(sorted(failures))]
        lines += [f"--- {name}: {err}" for name, err in sorted(failures.items())]
        super().__init__("\n".join(lines))
        self.failures, self.results = failures, results


def fingerprint(key: Any) -> str:
    """OpenSSH-style public fingerprint (safe to log: it is public)."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _known_hosts_name(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


@dataclass(frozen=True)
class HostFacts:
    """What the harness detects on connect to decide whether a local binary fits."""

    distribution: str   # e.g. "debian 12"
    architecture: str   # `uname -m`, e.g. "x86_64"


def _policy(host: Host, accept_new: bool) -> Any:
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if not accept_new:
                raise HostKeyRefused(
                    f"{host.describe()}: host key {fingerprint(key)} is not in {host.known_hosts}; "
                    "refusing to connect. Check that fingerprint out of band (ssh-keygen -lf "
                    "/etc/ssh/ssh_host_ed25519_key.pub on the host), then add it to that file, or "
                    "pass --accept-new-host-key once to trust and record it.")
            line = f"{_known_hosts_name(host)} {key.get_name()} {key.get_base64()}\n"
            host.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with host.known_hosts.open("a") as fh:
                fh.write(line)
            client.get_host_keys().add(_known_hosts_name(host), key.get_name(), key)
            log.warning("%s: accepted NEW host key %s (explicitly allowed) and recorded it in %s",
                        host.describe(), fingerprint(key), host.known_hosts)

    return Policy()


class Session:
    """A connected, authenticated SSH client for one host."""

    def __init__(self, host: Host, client: Any) -> None:
        self.host, self.client = host, client

    @property
    def transport(self) -> Any:
        return self.client.get_transport()

    def _wrap(self, command: str) -> str:
        return f"sudo -n sh -c {shlex.quote(command)}" if self.host.sudo else command

    def run(self, command: str, *, check: bool = True, timeout: float | None = None,
            input_bytes: bytes | None = None, quiet: bool = False) -> Result:
        """Run a shell command on the host; a bounded wait, a Result, CommandFailed if check.

        ``quiet`` keeps stdout out of the debug log (for commands that print secrets).
        """
        limit = timeout or self.host.command_timeout_s
        start = time.monotonic()
        log.debug("%s: run: %s", self.host.name, command)
        try:
            chan = self.transport.open_session(timeout=self.host.connect_timeout_s)
            chan.exec_command(self._wrap(command))
            if input_bytes is not None:
                # with the link gone, paramiko's socket writes retry forever: past the limit,
                # close the connection (it is dead anyway), which ends the write
                chan.settimeout(limit)
                watchdog = threading.Timer(limit, self.transport.close)
                watchdog.start()
                try:
                    chan.sendall(input_bytes)
                finally:
                    watchdog.cancel()
            chan.shutdown_write()
        except (TimeoutError, EOFError) as exc:
            if time.monotonic() - start < limit:
                raise StepError(f"{self.host.describe()}: connection lost while sending input to "
                                f"{command!r}: {exc}") from exc
            raise CommandFailed(command, -1, f"timed out after {limit:.0f} s sending its input; "
                                "the connection was closed", where=self.host.describe()) from exc
        except (OSError, AttributeError, _ssh_exception()) as exc:
            raise StepError(f"{self.host.describe()}: connection lost before running "
                            f"{command!r}: {exc}") from exc
        out, err = bytearray(), bytearray()
        exited_at: float | None = None
        try:
            while True:
                if exited_at is None and chan.exit_status_ready():
                    exited_at = time.monotonic()
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready() and chan.eof_received:
                    break
                elif chan.exit_status_ready() and exited_at is not None and \
                        time.monotonic() - exited_at > EOF_GRACE_S:
                    # the command has exited and its output has been read; a process it started in
                    # the background (setsid nohup ... &) can keep the channel from reaching EOF
                    break
                elif time.monotonic() - start > limit:
                    tail = Result((command,), -1, out.decode(errors="replace"), err.decode(errors="replace"),
                                  time.monotonic() - start).tail()
                    raise CommandFailed(command, -1, f"timed out after {limit:.0f} s\n{tail}",
                                        where=self.host.describe())
                elif not self.transport.is_active():
                    raise StepError(f"{self.host.describe()}: connection lost while running "
                                    f"{command!r}")
                else:
                    raise_if_stopped()  # a signal reached the main thread: stop this host too
                    time.sleep(POLL_S)
            code = chan.recv_exit_status()
        finally:
            chan.close()
        result = Result((command,), code, out.decode(errors="replace"), err.decode(errors="replace"),
                        time.monotonic() - start)
        if not quiet:
            log.debug("%s: exit %d in %.2f s", self.host.name, code, result.duration_s)
        if check and not result.ok:
            raise CommandFailed(command, code, "" if quiet else result.tail(),
                                where=self.host.describe())
        return result

    def put(self, data: bytes | Path, remote: PurePosixPath, mode: int = 0o644) -> str:
        """Upload to ``remote`` (via a temp name and rename), check SHA-256 on the host; return it."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        digest = hashlib.sha256(payload).hexdigest()
        tmp = remote.with_name(f".{remote.name}.upload")
        self.run(f"mkdir -p '{remote.parent}' && rm -f '{tmp}' && cat > '{tmp}' && "
                 f"chmod {mode:o} '{tmp}'", input_bytes=payload)
        got = self.run(f"sha256sum '{tmp}'").stdout.split()[0]
        if got != digest:
            self.run(f"rm -f '{tmp}'", check=False)
            raise StepError(f"{self.host.describe()}: checksum mismatch after uploading {remote}: "
                            f"sent {digest}, host has {got}; the upload was discarded.")
        self.run(f"mv -f '{tmp}' '{remote}'")
        log.debug("%s: uploaded %s (%d bytes, sha256 %s)", self.host.name, remote, len(payload), digest)
        return digest

    def read(self, remote: PurePosixPath) -> bytes:
        """A small file's bytes (e.g. the cookie): never logged."""
        import paramiko

        try:
            with self.client.open_sftp() as sftp, sftp.open(str(remote), "rb") as fh:
                return bytes(fh.read())
        except (OSError, paramiko.SSHException) as exc:
            # a sudo host may need the file through the shell instead of SFTP
            if self.host.sudo:
                res = self.run(f"base64 -w0 '{remote}'", quiet=True)
                return base64.b64decode(res.stdout)
            raise StepError(f"{self.host.describe()}: cannot read {remote}: {exc}") from exc

    def facts(self) -> HostFacts:
        res = self.run(". /etc/os-release && echo \"$ID $VERSION_ID\" && uname -m")
        lines = res.stdout.split("\n")
        return HostFacts(lines[0].strip(), lines[1].strip())

    def open_channel(self, port: int | None = None, path: PurePosixPath | None = None) -> Any:
        """A channel to 127.0.0.1:port or to a unix socket on the host (nothing opens on the network)."""
        from harness.remote.tunnel import open_streamlocal

        try:
            if path is not None:
                return open_streamlocal(self.transport, str(path), self.host.connect_timeout_s)
            return self.transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                               timeout=self.host.connect_timeout_s)
        except (OSError, EOFError, _ssh_exception()) as exc:
            target = path if path is not None else f"127.0.0.1:{port}"
            raise StepError(f"{self.host.describe()}: cannot open a channel to {target} on the host: "
                            f"{exc}") from exc


def _ssh_exception() -> type[Exception]:
    import paramiko

    return paramiko.SSHException


@contextmanager
def connect(host: Host, *, accept_new_host_key: bool = False) -> Iterator[Session]:
    """A ready Session; the connection is closed on exit, on error and on Ctrl-C."""
    import paramiko

    client = paramiko.SSHClient()
    try:
        if host.known_hosts.exists():
            client.load_host_keys(str(host.known_hosts))
        elif not accept_new_host_key:
            raise HostKeyRefused(f"{host.describe()}: known_hosts file {host.known_hosts} does not "
                                 "exist, so the host key cannot be verified; create it with the "
                                 "host's key or pass --accept-new-host-key once.")
        client.set_missing_host_key_policy(_policy(host, accept_new_host_key))
        client.connect(
            host.address, port=host.port, username=host.user,
            key_filename=str(host.key) if host.key else None, allow_agent=host.agent,
            look_for_keys=False, timeout=host.connect_timeout_s,
            banner_timeout=host.connect_timeout_s, auth_timeout=host.connect_timeout_s,
        )
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
    except HarnessError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyRefused(
            f"{host.describe()}: HOST KEY CHANGED: the server offers {fingerprint(exc.key)} but "
            f"{host.known_hosts} expects {fingerprint(exc.expected_key)}; refusing to connect. "
            "This may be an attack or a reinstalled host: verify out of band, then remove the old "
            "line from that file.") from None
    except paramiko.AuthenticationException as exc:
        client.close()
        how = f"key {host.key}" if host.key else "the ssh-agent"
        raise StepError(f"{host.describe()}: authentication with {how} failed: {exc}") from None
    except paramiko.SSHException as exc:
        client.close()
        if "no authentication methods" in str(exc).lower():
            raise StepError(f"{host.describe()}: nothing to authenticate with: the inventory gives no key "
                            "and no ssh-agent answers (SSH_AUTH_SOCK unset, or the agent holds no key); "
                            "set key = \"...\" for the host or add the key to the agent (ssh-add).") from None
        raise StepError(f"{host.describe()}: cannot connect within {host.connect_timeout_s:.0f} s: "
                        f"{exc or type(exc).__name__}") from None
    except (OSError, EOFError) as exc:
        client.close()
        raise StepError(f"{host.describe()}: cannot connect within {host.connect_timeout_s:.0f} s: "
                        f"{exc or type(exc).__name__}") from None
    except BaseException:
        client.close()
        raise
    log.info("%s: connected", host.describe())
    try:
        yield Session(host, client)
    finally:
        client.close()


def on_hosts(hosts: Sequence[Host], fn: Callable[[Host], T], max_workers: int = 8) -> dict[str, T]:
    """Run ``fn`` for every host in parallel; one result per host, one error naming the failed."""
    results: dict[str, T] = {}
    failures: dict[str, HarnessError] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(hosts)))) as pool:
        futures = {h.name: pool.submit(fn, h) for h in hosts}
        for name, fut in futures.items():
            try:
                results[name] = fut.result()
            except HarnessError as exc:
                failures[name] = exc
            except OSError as exc:
                failures[name] = StepError(str(exc))
    if failures:
        raise HostsFailed(failures, results)
    return results
