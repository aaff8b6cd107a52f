"""``natsmesh call`` starts light: what it imports, its own parser, and typer for the rest."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from natsmesh_cli import fastcall

from natsmesh.config import Settings
from natsmesh.loader import load_file
from natsmesh.ops.server import start_server
from tests.cli.test_cli import natsmesh_bin
from tests.conftest import ROOT, env_for

ECHO = ROOT / "bench" / "agents" / "echo.py"
#: top-level packages a call must not import (aiohttp: nats-py's websocket transport)
HEAVY = {
    "aiohttp",
    "litellm",
    "pydantic",
    "pydantic_core",
    "opentelemetry",
    "starlette",
    "uvicorn",
    "mcp",
    "typer",
    "click",
    "rich",
    "jinja2",
}


#: runs the console script (or ``python -m natsmesh_cli``) and writes ``sys.modules`` to
#: argv[1] when the CLI exits (it ends with ``os._exit``, which skips ``atexit``)
RECORDER = """
import os, runpy, sys
out = sys.argv.pop(1)
real_exit = os._exit
def record_and_exit(code):
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
    real_exit(code)
os._exit = record_and_exit
if os.path.exists(sys.argv[1]):
    runpy.run_path(sys.argv.pop(1), run_name="__main__")
else:
    sys.argv.pop(1)
    runpy.run_module("natsmesh_cli", run_name="__main__", alter_sys=True)
"""


async def run_cli(
    settings: Settings, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The CLI in a subprocess (from a thread: the agent runs in this loop) and the
    modules it had imported when it exited."""
    script = str(Path(sys.executable).parent / "natsmesh")
    record = tmp_path / "modules.txt"
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", RECORDER, str(record), script, *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, set(record.read_text().split()) if record.exists() else set()


@pytest.mark.parametrize("trace", [False, True], ids=["plain", "traced"])
async def test_call_imports_nothing_heavy(
    settings: Settings, start_agents: Callable[..., Any], tmp_path: Path, trace: bool
) -> None:
    await start_agents(load_file(ECHO))
    argv = ["call", "bench_echo", '{"text": "light"}', *(["--trace"] * trace)]
    proc, modules = await run_cli(settings, tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.split("Trace ID:")[0]) == {"text": "light"}
    assert ("Trace ID: " in proc.stdout) is trace
    assert "natsmesh.client" in modules and "nats.aio.transport" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert not modules & NOT_FOR_A_CALL
    assert ("natsmesh.tracing.context" in modules) is trace


#: modules ``import nats`` would load that a call does without (natsmesh.natsimport): the
#: JetStream layer (its API dataclasses, the email parser it reads headers with, and the
#: watched registry view's KV) and importlib.metadata (nats-py's own version)
NOT_FOR_A_CALL = {
    "nats.js.api",
    "nats.js.client",
    "nats.js.kv",
    "email.parser",
    "importlib.metadata",
    "natsmesh.session",
}


def test_natsmesh_keeps_aiohttp_out_of_nats_but_not_out_of_the_process() -> None:
    code = (
        "import sys, natsmesh, nats\n"
        "from nats.aio import transport\n"
        "assert transport.aiohttp is None and 'aiohttp' not in sys.modules\n"
        "import aiohttp\n"  # litellm, starlette clients... still get it
        "assert aiohttp.ClientSession\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_deferred_jetstream_loads_on_first_use_and_works(settings: Settings) -> None:
    code = (
        "import asyncio, importlib.util, sys\n"
        "from natsmesh import natsimport\n"
        "natsimport.defer_jetstream()\n"
        "import nats\n"
        "assert not natsimport.jetstream_loaded() and 'importlib.metadata' not in sys.modules\n"
        "from importlib.metadata import version\n"
        "assert nats.aio.client.__version__ == version('nats-py'), nats.aio.client.__version__\n"
        "from nats.js.api import KeyValueConfig\n"
        "assert natsimport.jetstream_loaded()\n"
        "async def main():\n"
        "    nc = await nats.connect(sys.argv[1])\n"
        "    kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket='deferred'))\n"
        "    await kv.put('k', b'v')\n"
        "    print((await kv.get('k')).value.decode())\n"
        "    await nc.close()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, settings.nats_url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "v"


def test_without_deferral_jetstream_loads_with_nats() -> None:
    """Agents and every other command import nats.js as nats-py does (no lazy module)."""
    code = (
        "import sys, natsmesh, nats\n"
        "assert 'nats.js.client' in sys.modules and type(sys.modules['nats.js']).__name__ == 'module'\n"
        "assert nats.aio.client.__version__ != '0.0.0'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_a_call_that_meets_a_status_message_fails_in_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    """A registry entry whose agent is gone: the call's request meets "503 no responders",
    a status message, which makes nats-py read ``nats.js.api`` (loaded then, on the spot)."""
    import nats

    from natsmesh.records import encode_for_registry
    from natsmesh.registry import open_bucket
    from tests.mesh.test_registry_snapshot import record

    nc = await nats.connect(settings.nats_url)
    try:
        kv = await open_bucket(nc.jetstream(), settings)
        await kv.put("gone.x", encode_for_registry(record("gone", "x", "vanished")))
    finally:
        await nc.close()
    proc, modules = await run_cli(settings, tmp_path, "call", "vanished", "{}", "--timeout", "3")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "nats.js.api" in modules  # the status header is JetStream's: loaded when met


def test_a_websocket_url_still_connects(tmp_path: Path) -> None:
    config = tmp_path / "ws.conf"
    config.write_text(
        'listen: "127.0.0.1:-1"\nwebsocket { listen: "127.0.0.1:-1", no_tls: true }\n'
    )
    server = start_server(tmp_path / "nats", config_file=config)
    try:
        ports = json.loads(next((tmp_path / "nats" / "ports").glob("*.ports")).read_text())
        code = (
            "import asyncio, sys, natsmesh, nats\n"
            "from natsmesh.config import Settings\n"
            "from natsmesh.connection import connect_nats\n"
            "assert nats.aio.transport.aiohttp is None\n"
            "async def main():\n"
            "    nc = await connect_nats(Settings(nats_url=sys.argv[1]), 'ws', reconnect=False)\n"
            "    sub = await nc.subscribe('ws.echo')\n"
            "    await nc.publish('ws.echo', b'over websocket')\n"
            "    print((await sub.next_msg(5)).data.decode())\n"
            "    await nc.close()\n"
            "asyncio.run(main())\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, ports["websocket"][0]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == "over websocket"
    finally:
        server.stop()


# --- the fast path's parser agrees with typer's --------------------------------------

WELL_FORMED = [
    ["call", "t"],
    ["call", "t", '{"a": 1}'],
    ["call", "t", "{}", "--trace"],
    ["call", "--trace", "t"],
    ["call", "t", "--timeout", "2.5", "--tags", "+fast,-beta", "--version", ">=1.0"],
    ["call", "t", "--timeout=7", "--tags=-beta", "--version=1.2"],
    ["call", "t", "--tags", "-beta"],
    ["call", "t", "--tags", "--trace"],
    ["call", "t", "--timeout", "1", "--timeout", "3"],
    ["call", "t", "--stream"],
    ["call", "--no-stream", "t", "{}"],
    ["call", "t", "--stream", "--no-stream"],
    ["call", "--", "t", "{}"],
    ["call", "t", "--", "--trace"],
    ["call", "-", "{}"],
    ["-s", "nats://a:4222", "call", "t"],
    ["--server=nats://b:4222", "--user", "u", "--password", "p", "call", "t"],
    ["--token", "tk", "--creds", "c.creds", "--nkey", "k.nk", "call", "t"],
    ["--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem", "call", "t", "{}"],
]
#: typer's: help, usage errors, other commands, forms the fast parser leaves alone
FOR_TYPER = [
    [],
    ["--help"],
    ["call"],
    ["call", "--help"],
    ["call", "t", "--help"],
    ["call", "t", "{}", "extra"],
    ["call", "t", "--timeout", "soon"],
    ["call", "t", "--timeout"],
    ["call", "t", "--trace=yes"],
    ["call", "t", "--no-trace"],
    ["call", "t", "--stream=yes"],
    ["call", "t", "-x"],
    ["-s"],
    ["-snats://a:4222", "call", "t"],
    ["--bogus", "call", "t"],
    ["list", "--tools"],
    ["status"],
    ["trace", "call"],
]


def typer_parse(argv: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """What the typer app makes of ``argv``: (connection flags given, call parameters)."""
    import typer.main
    from natsmesh_cli.app import app

    group = typer.main.get_command(app)
    ctx = group.make_context("natsmesh", list(argv))
    name, command, rest = group.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
    assert name == "call" and command is not None
    params = command.make_context(name, rest, parent=ctx).params
    flags = {k: v for k, v in ctx.params.items() if v is not None}
    return flags, params


@pytest.mark.parametrize("argv", WELL_FORMED, ids=" ".join)
def test_fast_parser_reads_a_call_as_typer_does(argv: list[str]) -> None:
    assert fastcall.parse(argv) == typer_parse(argv)


@pytest.mark.parametrize("argv", FOR_TYPER, ids=lambda a: " ".join(a) or "(none)")
def test_everything_else_goes_to_typer(argv: list[str]) -> None:
    assert fastcall.parse(argv) is None


def test_the_fast_path_knows_every_connection_option() -> None:
    import typer.main
    from natsmesh_cli.app import app
    from natsmesh_cli.options import CONNECTION_FIELDS

    group = typer.main.get_command(app)
    declared = {opt: p.name for p in group.params for opt in p.opts if p.name}
    assert declared == fastcall.CONNECTION_FLAGS
    assert set(declared.values()) == set(CONNECTION_FIELDS)


def test_help_and_usage_errors_stay_typers() -> None:
    run = lambda *a: subprocess.run(  # noqa: E731
        [*natsmesh_bin(), *a], capture_output=True, text=True, timeout=60
    )
    top = run("--help")
    assert top.returncode == 0 and "╭─ Commands" in top.stdout and "call" in top.stdout
    call_help = run("call", "--help")
    assert call_help.returncode == 0 and "--timeout" in call_help.stdout
    missing = run("call")
    assert missing.returncode == 2 and "Missing argument" in missing.stderr
    bad = run("call", "t", "--timeout", "soon")
    assert bad.returncode == 2 and "Invalid value" in bad.stderr
