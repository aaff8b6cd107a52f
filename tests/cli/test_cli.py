"""The CLI end to end: embedded nats-server, detached agents, list, call, trace, stop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from natsmesh.ops.cluster import reserved_ports
from tests.conftest import AGENTS, ROOT

FLIGHT = '{"origin":"SFO","destination":"NRT","date":"2026-06-01"}'


def natsmesh_bin() -> list[str]:
    found = Path(sys.executable).parent / "natsmesh"
    return [str(found)] if found.exists() else [sys.executable, "-m", "natsmesh_cli.app"]


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*natsmesh_bin(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"natsmesh {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """A fresh home and a NATS URL where nothing runs: `start` must embed a server there.
    The URL's port stays reserved for the module, so nothing else can take it meanwhile."""
    home = tmp_path_factory.mktemp("home")
    with reserved_ports(1) as [port]:
        env = dict(os.environ)
        env.update(
            {
                "NATSMESH_HOME": str(home),
                "NATS_URL": f"nats://127.0.0.1:{port}",
                "NATSMESH_REGISTRY_TTL": "3",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            }
        )
        runner = Cli(env)
        try:
            yield runner
        finally:
            runner("stop", check=False)
            shutil.rmtree(home, ignore_errors=True)


TOOL_AGENTS = ["flight_agent", "hotel_agent", "weather_agent", "poi_agent", "user_prefs_agent"]


@pytest.fixture(scope="module")
def started(cli: Cli) -> subprocess.CompletedProcess[str]:
    return cli("start", *(str(AGENTS / a) for a in TOOL_AGENTS), "-d", timeout=90)


def test_start_embeds_a_server_and_registers_agents(
    started: subprocess.CompletedProcess[str],
) -> None:
    assert "started an embedded nats-server with JetStream" in started.stderr
    assert started.stdout.count("✓") == 5


def test_list_shows_agents_and_deps(cli: Cli, started) -> None:
    rows = {r["name"]: r for r in json.loads(cli("list", "--json").stdout)}
    assert set(rows) == {
        "flight-agent",
        "hotel-agent",
        "weather-agent",
        "poi-agent",
        "user-prefs-agent",
    }
    assert rows["flight-agent"]["deps"] == "1/1"
    assert rows["poi-agent"]["deps"] == "1/1"
    assert rows["hotel-agent"]["deps"] == "0/0"
    table = cli("list").stdout
    assert table.splitlines()[0].split() == [
        "NAME",
        "STATUS",
        "DEPS",
        "VERSION",
        "INSTANCE",
        "AGE",
        "LAST",
        "SEEN",
    ]


def test_list_tools(cli: Cli, started) -> None:
    out = cli("list", "--tools").stdout
    assert out.splitlines()[0].split()[:4] == ["TOOL", "AGENT", "CAPABILITY", "TAGS"]
    assert "flight_search" in out and "user_preferences" in out
    # meshctl's closing count line
    assert out.splitlines()[-1] == "5 tool(s) found"


def test_list_wide_shows_runtime_and_type(cli: Cli, started) -> None:
    lines = cli("list", "--wide").stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "RUNTIME", "TYPE"]
    flight = next(line.split() for line in lines if line.startswith("flight-agent"))
    assert flight[1:3] == ["python", "agent"]


def test_call_prints_the_result(cli: Cli, started) -> None:
    result = json.loads(cli("call", "flight_search", FLIGHT).stdout)
    assert [f["flight"] for f in result["flights"]] == ["MH007", "SQ017"]
    by_capability = json.loads(cli("call", "weather_forecast", '{"location":"Kyoto"}').stdout)
    assert by_capability["location"] == "Kyoto"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flight_search", "{bad json"], "not valid JSON"),
        (["flight_search", "[1]"], "must be a JSON object"),
        (["flight_search", '{"origin": 1, "destination": "x", "date": "y"}'], "invalid_arguments"),
        (["flight_search", '{"origin": "SFO"}'], "destination: Field required"),
        (["no_such_tool", "{}"], "no_provider"),
    ],
)
def test_call_errors_exit_non_zero_with_one_line(
    cli: Cli, started, args: list[str], message: str
) -> None:
    proc = cli("call", *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert json.loads(cli("call", "hotel_search", '{"destination":"Kyoto"}').stdout)["hotels"]


def test_call_trace_and_trace_tree(cli: Cli, started) -> None:
    out = cli("call", "flight_search", FLIGHT, "--trace").stdout
    trace_id = out.strip().splitlines()[-1].removeprefix("Trace ID: ")
    assert len(trace_id) == 32
    tree = cli("trace", trace_id).stdout.splitlines()
    assert tree[0] == f"Call Tree for trace {trace_id}"
    assert tree[1].startswith("└─ flight_search (flight-agent) [") and tree[1].endswith("✓")
    assert tree[2].startswith("   └─ get_user_prefs (user-prefs-agent) [")
    assert tree[3].startswith("Summary: 2 spans across 2 agents |")
    spans = json.loads(cli("trace", trace_id, "--json").stdout)
    assert {s["trace_id"] for s in spans} == {trace_id}


def test_trace_unknown_id(cli: Cli, started) -> None:
    proc = cli("trace", "0123456789abcdef0123456789abcdef", "--retries", "0", check=False)
    assert proc.returncode == 1
    assert "no spans found" in proc.stderr
    bad = cli("trace", "not-an-id", check=False)
    assert bad.returncode == 2


def test_status(cli: Cli, started) -> None:
    data = json.loads(cli("status", "--json").stdout)
    assert data["jetstream"] is True
    assert data["agents"] == 5
    assert data["server_version"].startswith("2.")
    agents = {r["agent"] for r in data["traffic"]["agents"]}
    assert agents == {
        "flight-agent",
        "hotel-agent",
        "weather-agent",
        "poi-agent",
        "user-prefs-agent",
    }
    table = cli("status").stdout
    assert "traffic per agent" in table and "BYTES IN" in table


def test_logs(cli: Cli, started) -> None:
    assert "serving get_weather" in cli("logs", "weather-agent").stdout


def test_scale_out_by_starting_again(cli: Cli, started) -> None:
    cli("start", str(AGENTS / "hotel_agent"), "-d")
    rows = json.loads(cli("list", "--json").stdout)
    assert sum(r["name"] == "hotel-agent" for r in rows) == 2
    out = cli("stop", "hotel-agent").stdout
    assert out.count("stopped hotel-agent") == 2


def test_scaffold_creates_a_loadable_agent(tmp_path: Path, cli: Cli) -> None:
    cli("scaffold", "--name", "greeter-agent", "--dir", str(tmp_path))
    from natsmesh.loader import load_file

    loaded = load_file(tmp_path / "greeter_agent" / "main.py")
    assert loaded.agent.name == "greeter-agent"
    bad = cli("scaffold", "--name", "bad name", "--dir", str(tmp_path), check=False)
    assert bad.returncode == 2


def test_stop_everything(cli: Cli, started) -> None:
    out = cli("stop").stdout
    assert "stopped the embedded nats-server" in out
    proc = cli("list", check=False)
    assert proc.returncode == 1
    assert "no NATS server answers" in proc.stderr
