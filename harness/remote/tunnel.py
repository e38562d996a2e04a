"""A relay's control port reached through its SSH connection; nothing opens on the network.

Each control connection is one SSH channel: ``direct-tcpip`` to 127.0.0.1:PORT on the host,
or ``direct-streamlocal@openssh.com`` to a ControlSocket path. A paramiko channel behaves
enough like a socket (makefile/shutdown/close) for stem to drive it, so the collector's
``SocketFactoryTransport`` seam takes a function opening one.

The control auth cookie lives on the host: it is read over SFTP into a private temp file
(mode 0600 in a 0700 directory) that is removed when the tunnel closes; its bytes never
reach a log line, an exception message or a record.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import InputError, StepError
from harness.remote.inventory import Host

log = logging.getLogger(__name__)

STREAMLOCAL = "direct-streamlocal@openssh.com"
_MSG_CHANNEL_OPEN = 90
_streamlocal_lock = threading.Lock()


def open_streamlocal(transport: Any, path: str, timeout: float) -> Any:
    """Open a channel to a unix socket on the server (OpenSSH's ``ssh -W /path``).

    paramiko 3-5 builds the CHANNEL_OPEN message for tcpip/x11 kinds only, so for this
    kind the three fields OpenSSH expects (socket path, reserved string, reserved uint32)
    are appended to that one message on its way out.
    """
    kind = STREAMLOCAL.encode()
    original = transport._send_user_message

    def send(m: Any) -> Any:
        raw = m.asbytes()
        if raw[:1] == bytes([_MSG_CHANNEL_OPEN]) and raw[5:5 + len(kind)] == kind:
            m.add_string(path)
            m.add_string("")
            m.add_int(0)
        return original(m)

    with _streamlocal_lock:
        transport._send_user_message = send
        try:
            return transport.open_channel(STREAMLOCAL, timeout=timeout)
        finally:
            del transport._send_user_message


@dataclass(frozen=True)
class ControlTarget:
    """Where tor's control endpoint is on the host: a loopback port or a socket path."""

    port: int | None = None
    socket_path: PurePosixPath | None = None

    def describe(self) -> str:
        return str(self.socket_path) if self.socket_path else f"127.0.0.1:{self.port}"

    @staticmethod
    def of_host(host: Host) -> ControlTarget:
        return ControlTarget(host.control_port, host.control_socket)

    @staticmethod
    def parse(text: str | None, host: Host) -> ControlTarget:
        """``PORT``, ``127.0.0.1:PORT``, ``localhost:PORT`` or ``/path``; None: the inventory's."""
        if text is None:
            return ControlTarget.of_host(host)
        if text.startswith("/"):
            return ControlTarget(socket_path=PurePosixPath(text))
        m = re.fullmatch(r"(?:(127\.0\.0\.1|localhost|\[::1\]):)?(\d{1,5})", text)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise InputError(f"--control {text!r} with --ssh must be a port on the relay's loopback "
                             "(9051 or 127.0.0.1:9051) or a ControlSocket path on the relay; a "
                             "control port is never reached on a public address.")
        return ControlTarget(port=int(m.group(2)))


class _ChannelIO(io.RawIOBase):
    """A paramiko channel as a raw binary stream, the way ``socket.SocketIO`` wraps a socket.

    Why not ``Channel.makefile()``: paramiko's ``BufferedFile.__del__`` flushes again even
    after ``close()``. When the file ends up in a reference cycle (stem's reader thread and
    controller hold one), the garbage collector may finalize its inner ``BytesIO`` first,
    and that second flush prints ``Exception ignored in BufferedFile.__del__ ...
    ValueError: I/O operation on closed file`` when the process exits. The standard
    library's buffered streams over this raw stream close idempotently instead.
    Closing the stream leaves the channel open, as closing a socket's file does.
    """

    def __init__(self, channel: Any) -> None:
        super().__init__()
        self._channel = channel

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._channel.recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        return int(self._channel.send(bytes(data)))


class ChannelSocket:
    """The socket surface stem uses (makefile, shutdown, close) over a paramiko channel."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def makefile(self, mode: str = "rwb", buffering: int = -1) -> Any:
        if mode != "rwb":
            raise ValueError(f"ChannelSocket.makefile supports mode 'rwb' only, not {mode!r}")
        raw = _ChannelIO(self.channel)
        size = buffering if buffering > 0 else io.DEFAULT_BUFFER_SIZE
        return io.BufferedRWPair(raw, raw, size)  # as socket.makefile does for "rwb"

    def shutdown(self, how: int) -> None:
        self.channel.shutdown(how)

    def close(self) -> None:
        self.channel.close()


class ControlTunnel:
    """An open SSH connection that hands out control-port channels and the cookie."""

    def __init__(self, session: Any, target: ControlTarget) -> None:
        self.session, self.target = session, target
        self._tmpdir: Path | None = None

    def describe(self) -> str:
        return f"{self.target.describe()} on {self.session.host.describe()} via SSH"

    def channel(self) -> Any:
        """A fresh socket-like channel to tor's control endpoint."""
        return ChannelSocket(self.session.open_channel(self.target.port, self.target.socket_path))

    def transport(self) -> Any:
        """The collector's seam: a Transport whose connections are channels of this tunnel."""
        from harness.control.transport import SocketFactoryTransport

        return SocketFactoryTransport(self.channel, self.describe())

    def cookie_file(self) -> Path | None:
        """A local private copy of the cookie tor announces (None if tor uses no cookie)."""
        import stem
        import stem.connection

        sock = self.transport().connect()
        try:
            info = stem.connection.get_protocolinfo(sock)
        except (stem.ControllerError, stem.SocketError) as exc:
            raise StepError(f"PROTOCOLINFO through {self.describe()} failed: {exc}") from exc
        finally:
            sock.close()
        if not info.cookie_path:
            return None
        data = self.session.read(PurePosixPath(info.cookie_path))
        if self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="kist-cookie-"))
            os.chmod(self._tmpdir, 0o700)
        local = self._tmpdir / "control_auth_cookie"
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        log.debug("fetched the control cookie from %s (%d bytes)", info.cookie_path, len(data))
        return local

    @contextlib.contextmanager
    def controller(self) -> Iterator[Any]:
        """An authenticated stem Controller over one channel; closed on exit."""
        import stem.control

        from harness.control.auth import Credentials, authenticate

        cookie = self.cookie_file()
        controller = stem.control.Controller(self.transport().connect())
        try:
            authenticate(controller, Credentials(cookie_path=cookie))
            yield controller
        finally:
            controller.close()

    def close(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


@contextlib.contextmanager
def open_control_tunnel(host: Host, control: str | ControlTarget | None = None, *,
                        accept_new_host_key: bool = False,
                        session: Any = None) -> Iterator[ControlTunnel]:
    """Connect (or reuse ``session``) and yield a tunnel to tor's control endpoint on ``host``.

    ``control`` is a ControlTarget, a ``--control`` text, or None for the inventory's.
    Everything (channels, cookie copy, the SSH connection if opened here) closes on exit.
    """
    from harness.remote.ssh import connect

    target = control if isinstance(control, ControlTarget) else ControlTarget.parse(control, host)
    with contextlib.ExitStack() as stack:
        if session is None:
            session = stack.enter_context(connect(host, accept_new_host_key=accept_new_host_key))
        tunnel = ControlTunnel(session, target)
        stack.callback(tunnel.close)
        yield tunnel


def ssh_transport(host_name: str, control: str | None, inventory: Path | None = None,
                  *, accept_new_host_key: bool = False) -> Any:
    """For ``kist-harness collect --ssh HOST``: a Transport through HOST's SSH connection.

    HOST is looked up in ``inventory`` (None: $KIST_HARNESS_INVENTORY, else ./inventory.toml).

    The returned transport also carries ``cookie_path``: a private local copy of the
    relay's cookie (or None), removed with the connection by ``close()``.
    """
    from harness.remote import inventory as inv

    host = inv.load(inv.locate(inventory)).get(host_name)
    stack = contextlib.ExitStack()
    try:
        tunnel = stack.enter_context(open_control_tunnel(host, control,
                                                         accept_new_host_key=accept_new_host_key))
        transport = tunnel.transport()
        transport.on_close = stack.close
        transport.cookie_path = tunnel.cookie_file()
    except BaseException:
        stack.close()
        raise
    return transport
