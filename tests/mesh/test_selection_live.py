"""Tag and version selection between live providers, and failover."""

from __future__ import annotations

import pytest

from natsmesh.config import Settings
from natsmesh.errors import NoProvider
from natsmesh.session import connect
from tests.helpers import provider


@pytest.fixture
async def three_providers(start_agents, settings: Settings):
    runtimes = await start_agents(
        provider("fast-translator", ["fast", "cheap"], "1.0.0"),
        provider("good-translator", ["good"], "2.1.0"),
        provider("beta-translator", ["good", "beta"], "3.0.0"),
    )
    return {rt.agent.name: rt for rt in runtimes}


async def by(mesh, **selector) -> str:
    return (await mesh.call("translate", {"text": "hi"}, **selector))["by"]


async def test_required_preferred_excluded_and_version(three_providers, settings: Settings) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        assert await by(mesh, tags="fast") == "fast-translator"
        assert await by(mesh, tags="good,-beta") == "good-translator"
        assert await by(mesh, tags="+beta") == "beta-translator"
        assert await by(mesh, version=">=2,<3") == "good-translator"
        assert await by(mesh, version="<2") == "fast-translator"
        assert {await by(mesh, tags="good") for _ in range(30)} == {
            "good-translator",
            "beta-translator",
        }, "tied providers share the calls"
        with pytest.raises(NoProvider, match="matches"):
            await mesh.call("translate", {"text": "hi"}, tags="missing")
        with pytest.raises(NoProvider):
            await mesh.call("translate", {"text": "hi"}, version=">=9")


async def test_failover_when_preferred_provider_is_gone(
    three_providers, settings: Settings
) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        assert await by(mesh, tags="+cheap") == "fast-translator"
        # stop taking work without deregistering: the caller's view still lists it, so the
        # call meets "no responders" and fails over to the next candidate at once
        fast = three_providers["fast-translator"]
        for sub in fast._subs:
            await sub.unsubscribe()
        fast._subs.clear()
        assert fast.nc is not None
        await fast.nc.flush()
        assert "fast-translator" in {r.name for r in mesh.view.records.values()}
        assert await by(mesh, tags="+cheap") in {"good-translator", "beta-translator"}


async def test_worker_refuses_a_selector_it_does_not_match(
    three_providers, settings: Settings
) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        reply = await mesh.nc.request(
            f"{settings.prefix}.cap.translate.fast-translator",
            b'{"text": "hi"}',
            timeout=2,
            headers={"Mesh-Tags": "good"},
        )
        assert reply.headers is not None
        assert reply.headers["Mesh-Error"] == "tag_mismatch"
        assert reply.headers["Mesh-Instance"].startswith("fast-translator-")
