"""The CLI's global options: connection flags become :class:`Settings` overrides.

Flags never go through ``os.environ``: every command builds its settings with
:func:`settings`, and processes it starts get them from ``Settings.environment``.
"""

from __future__ import annotations

from typing import Any

from natsmesh.config import Settings

#: a flag's name (as typer and the fast path know it) -> the settings field it sets
CONNECTION_FIELDS = {
    "server": "nats_url",
    "user": "user",
    "password": "password",
    "token": "token",
    "creds": "creds_file",
    "nkey": "nkey_seed_file",
    "tls_ca": "tls_ca",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
}
#: the values given on this command line
OVERRIDES: dict[str, Any] = {}


def set_connection(**flags: Any) -> None:
    """Record the connection flags that were given (``None``: not given)."""
    for name, value in flags.items():
        if value is not None:
            OVERRIDES[CONNECTION_FIELDS[name]] = value


def settings(**more: Any) -> Settings:
    """The environment's settings with this command line's flags on top."""
    return Settings.from_env(**{**OVERRIDES, **more})
