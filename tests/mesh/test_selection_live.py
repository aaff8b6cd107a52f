"""Tag and version selection between live providers, and failover."""

from __future__ import annotations

import collections
import signal

import pytest

from natsmesh.config import Settings
from natsmesh.errors import NoProvider
from natsmesh.ops.server import RunningServer
from natsmesh.session import connect
from tests.conftest import mesh_settings
from tests.helpers import TEST_AGENTS, provider


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


async def tally(mesh, calls: int, **selector) -> collections.Counter[str]:
    return collections.Counter([await by(mesh, **selector) for _ in range(calls)])


#: calls in the sharing test; with a fair coin each side gets at least SHARE of them except
#: with probability P(Binomial(400, 1/2) < 100) < 1e-23, while a 29:1 split gets about 13
CALLS, SHARE = 400, 100


async def test_required_preferred_excluded_and_version(three_providers, settings: Settings) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        # good and beta-translator both carry "good": without the exclusion they would tie,
        # so 40 calls all landing on good-translator happen by chance with p = 2**-40
        assert await tally(mesh, 40, tags="good,-beta") == {"good-translator": 40}
        assert await tally(mesh, 20, tags="fast") == {"fast-translator": 20}
        assert await tally(mesh, 20, tags="+beta") == {"beta-translator": 20}
        assert await tally(mesh, 20, version=">=2,<3") == {"good-translator": 20}
        assert await tally(mesh, 20, version="<2") == {"fast-translator": 20}
        with pytest.raises(NoProvider, match="matches"):
            await mesh.call("translate", {"text": "hi"}, tags="missing")
        with pytest.raises(NoProvider):
            await mesh.call("translate", {"text": "hi"}, version=">=9")


async def test_tied_providers_share_the_calls_fairly(three_providers, settings: Settings) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=5)
        counts = await tally(mesh, CALLS, tags="good")
    assert set(counts) == {"good-translator", "beta-translator"}
    assert min(counts.values()) >= SHARE, f"tied providers share the calls: {dict(counts)}"


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


async def test_killed_provider_is_passed_over_while_its_entry_is_still_listed(
    start_agents, spawn_agent, nats_server: RunningServer
) -> None:
    # a long TTL: the dead provider's registry entry certainly outlives the test's calls
    slow_expiry = mesh_settings(nats_server.url, registry_ttl=60)
    proc = spawn_agent(TEST_AGENTS / "fast_translator.py", settings_=slow_expiry)
    await start_agents(provider("good-translator", ["good"]), settings_=slow_expiry)
    async with connect(slow_expiry) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=15)
        assert await by(mesh, tags="+fast") == "fast-translator"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # at once, long before the TTL: NATS answers "no responders" for the dead provider's
        # subject and the caller fails over to the next candidate
        assert await tally(mesh, 5, tags="+fast") == {"good-translator": 5}
        assert "fast-translator" in {r.name for r in mesh.view.records.values()}, (
            "the calls above ran while the dead provider was still listed"
        )


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
