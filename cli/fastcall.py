"""The console script: it parses ``natsmesh call`` itself and runs every other command in typer.

A call needs asyncio, nats-py and the mesh client (:mod:`natsmesh_cli.calling`), nothing
more: no typer, click or rich, no pydantic, no aiohttp (see :mod:`natsmesh.natsimport`),
no OpenTelemetry (``--trace`` formats a ``traceparent`` and publishes one span message).
:func:`parse` understands exactly the well-formed calls; anything else (``--help``, an
unknown option, a bad value, another command) goes to the typer app, so help and errors
stay typer's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

#: the typer app's connection options (``natsmesh_cli.app.connection``) -> their names there
CONNECTION_FLAGS = {
    "--server": "server",
    "-s": "server",
    "--user": "user",
    "--password": "password",
    "--token": "token",
    "--creds": "creds",
    "--nkey": "nkey",
    "--tls-ca": "tls_ca",
    "--tls-cert": "tls_cert",
    "--tls-key": "tls_key",
}
#: ``natsmesh call``'s options that take a value -> its parameter
CALL_OPTIONS = {"--timeout": "timeout", "--tags": "tags", "--version": "version"}
#: its flags -> (parameter, value)
CALL_FLAGS = {
    "--trace": ("trace", True),
    "--stream": ("stream", True),
    "--no-stream": ("stream", False),
}
CALL_DEFAULTS: dict[str, Any] = {
    "args": "{}",
    "timeout": 30.0,
    "tags": "",
    "version": None,
    "trace": False,
    "stream": None,
}


def parse(argv: Sequence[str]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """``(connection flags, call parameters)`` for a well-formed ``[connection options] call
    ...``; ``None`` for anything else (the typer app then handles it)."""
    env: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        variable = CONNECTION_FLAGS.get(name)
        if variable is None or (eq and not name.startswith("--")):
            return None
        if not eq:
            i += 1
            if i == len(argv):
                return None
            value = argv[i]
        env[variable] = value
        i += 1
    if i == len(argv) or argv[i] != "call":
        return None
    params = dict(CALL_DEFAULTS)
    positional: list[str] = []
    rest = list(argv[i + 1 :])
    while rest:
        token = rest.pop(0)
        if token == "--":
            positional += rest
            break
        if not token.startswith("-") or token == "-":
            positional.append(token)
            continue
        flag = CALL_FLAGS.get(token)
        if flag is not None:
            params[flag[0]] = flag[1]
            continue
        name, eq, value = token.partition("=")
        key = CALL_OPTIONS.get(name)
        if key is None or (not eq and not rest):
            return None
        params[key] = value if eq else rest.pop(0)
    if not 1 <= len(positional) <= 2:
        return None
    params["tool"] = positional[0]
    if len(positional) == 2:
        params["args"] = positional[1]
    try:
        params["timeout"] = float(params["timeout"])
    except ValueError:
        return None
    return env, params


def main() -> None:
    """The ``natsmesh`` console script."""
    parsed = parse(sys.argv[1:])
    if parsed is None:
        from natsmesh_cli.app import main as app_main

        app_main()
        return
    flags, params = parsed
    from natsmesh import natsimport

    natsimport.defer_jetstream()  # before anything imports nats: a call seldom needs it

    from natsmesh_cli.calling import run_call
    from natsmesh_cli.options import set_connection

    set_connection(**flags)

    try:
        run_call(**params)
        code = 0
    except SystemExit as exc:
        if not isinstance(exc.code, int):
            raise
        code = exc.code
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = code or 1
    # nothing is left to clean up: skip the interpreter's teardown (10-20 ms)
    os._exit(code)
