"""Authenticating to tor through stem: SAFECOOKIE/COOKIE, hashed password, or none.

Secrets are read here and handed straight to stem; they never appear in a log line,
an exception message or a record. stem's own messages can quote paths but not secrets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError, StepError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """How to authenticate. ``password`` is excluded from repr so it cannot leak via logs."""

    cookie_path: Path | None = None
    password: str | None = field(default=None, repr=False)

    @staticmethod
    def from_args(cookie: Path | None, password_file: Path | None) -> Credentials:
        """Check the files now, so a typo fails before connecting (messages name the file)."""
        if cookie is not None and not cookie.is_file():
            raise InputError(f"--cookie {cookie}: no such file; tor writes it where "
                             "CookieAuthFile says (default <DataDirectory>/control_auth_cookie).")
        password = None
        if password_file is not None:
            try:
                password = password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise InputError(f"--password-file {password_file}: cannot read it "
                                 f"({exc.strerror}).") from exc
            if not password:
                raise InputError(f"--password-file {password_file} is empty.")
        return Credentials(cookie, password)


def authenticate(controller: Any, creds: Credentials) -> None:
    """Authenticate a fresh stem Controller; StepError (without secrets) if tor refuses."""
    import stem.connection

    try:
        if creds.cookie_path is not None:
            # stem reads the cookie itself; point it at ours by authenticating explicitly
            protocolinfo = stem.connection.get_protocolinfo(controller)
            protocolinfo.cookie_path = str(creds.cookie_path)
            stem.connection.authenticate(controller, password=creds.password,
                                         protocolinfo_response=protocolinfo)
        else:
            stem.connection.authenticate(controller, password=creds.password)
    except stem.connection.MissingPassword as exc:
        raise StepError("tor asks for a password: give --password-file.") from exc
    except stem.connection.PasswordAuthFailed as exc:
        raise StepError("tor refused the password from --password-file.") from exc
    except stem.connection.AuthenticationFailure as exc:
        # stem's messages name methods and cookie paths, never secret values
        raise StepError(f"authentication to tor failed: {type(exc).__name__}: {exc}") from exc
    except stem.ControllerError as exc:
        raise StepError(f"authentication to tor failed: {exc}") from exc
    log.debug("authenticated (%s)", "cookie" if creds.cookie_path else
              "password" if creds.password else "automatic")
