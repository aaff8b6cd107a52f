"""Bad input gets a clear error reply, and the worker keeps serving."""

from __future__ import annotations

import json

import pytest

from natsmesh.config import Settings
from natsmesh.errors import InvalidArguments, NoProvider, PayloadTooLarge, ToolError
from natsmesh.session import connect
from tests.helpers import TEST_AGENTS


@pytest.fixture
async def mesh(start_agents, settings: Settings):
    from natsmesh.loader import load_file

    await start_agents(
        load_file(TEST_AGENTS / "echo_agent.py"), load_file(TEST_AGENTS / "gamma.py")
    )
    async with connect(settings) as client:
        await client.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        yield client


async def raw(mesh, body: bytes, headers: dict[str, str] | None = None) -> dict:
    subject = f"{mesh.settings.prefix}.cap.echo.echo-agent"
    reply = await mesh.nc.request(subject, body, timeout=5, headers=headers)
    return json.loads(reply.data)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "(body)"),
        (b"[1, 2]", "(body)"),
        (b'{"text": 5}', "text"),
        (b'{"delay": "soon"}', "delay"),
        (b'{"unknown": 1}', "unknown"),
        (b"\xff\xfe\x00garbage", "(body)"),
    ],
)
async def test_malformed_bodies_get_invalid_arguments(mesh, body: bytes, field: str) -> None:
    reply = await raw(mesh, body)
    assert reply["error"]["type"] == "invalid_arguments"
    assert field in [e["field"] for e in reply["error"]["details"]["errors"]]
    assert (await mesh.call("echo", {"text": "still here"}))["text"] == "still here"


async def test_missing_argument_names_the_field(start_agents, settings: Settings) -> None:
    await start_agents("user_prefs_agent", "flight_agent")
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
        with pytest.raises(InvalidArguments, match="destination: Field required") as info:
            await mesh.call("flight_search", {"origin": "SFO"})
        assert isinstance(info.value, ValueError)


async def test_tool_exception_is_a_tool_error(mesh) -> None:
    with pytest.raises(ToolError, match="RuntimeError: gamma was asked to fail") as info:
        await mesh.call("gamma", {"fail": True})
    assert info.value.details == {"exception": "RuntimeError"}
    assert "traceback" not in info.value.details
    assert (await mesh.call("gamma", {}))["gamma"] is True


async def test_unknown_tool_and_capability(mesh) -> None:
    with pytest.raises(NoProvider, match="no_such_tool"):
        await mesh.call("no_such_tool", {})
    with pytest.raises(NoProvider, match="'nothing'"):
        await mesh.call({"capability": "nothing"}, {})


async def test_oversized_arguments_and_results(mesh) -> None:
    limit = mesh.nc.max_payload
    with pytest.raises(PayloadTooLarge):
        await mesh.call("echo", {"text": "x" * (limit + 10)})
    with pytest.raises(PayloadTooLarge, match="returned"):
        await mesh.call("echo", {"size": limit})
    assert (await mesh.call("echo", {"text": "ok"}))["text"] == "ok"


async def test_deadline_already_passed_is_refused(mesh) -> None:
    reply = await raw(mesh, b"{}", {"Mesh-Deadline": "1000"})
    assert reply["error"]["type"] == "timeout"


async def test_slow_tool_is_cancelled_at_the_deadline(mesh) -> None:
    from natsmesh.errors import ToolTimeout

    with pytest.raises(ToolTimeout) as info:
        await mesh.call("echo", {"delay": 5}, timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert (await mesh.call("echo", {"text": "next"}))["text"] == "next"
