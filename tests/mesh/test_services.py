"""The NATS services protocol (ADR-32): nats micro ls sees the mesh."""

from __future__ import annotations

import json

from natsmesh.config import Settings
from natsmesh.session import connect


async def test_srv_info_ping_and_stats(start_agents, settings: Settings) -> None:
    [rt] = await start_agents("weather_agent")
    async with connect(settings) as mesh:
        await mesh.call("get_weather", {"location": "Kyoto"})
        info = json.loads((await mesh.nc.request("$SRV.INFO.weather-agent", b"", timeout=2)).data)
        assert info["type"] == "io.nats.micro.v1.info_response"
        assert info["name"] == "weather-agent"
        assert info["id"] == rt.instance_id
        assert info["version"] == "1.0.0"
        [endpoint] = info["endpoints"]
        assert endpoint["name"] == "get_weather"
        assert endpoint["subject"] == f"{settings.prefix}.cap.weather_forecast.weather-agent"
        assert endpoint["queue_group"] == "weather-agent"
        assert endpoint["metadata"]["capability"] == "weather_forecast"

        ping = json.loads(
            (
                await mesh.nc.request(f"$SRV.PING.weather-agent.{rt.instance_id}", b"", timeout=2)
            ).data
        )
        assert ping["type"] == "io.nats.micro.v1.ping_response"

        stats = json.loads((await mesh.nc.request("$SRV.STATS", b"", timeout=2)).data)
        assert stats["type"] == "io.nats.micro.v1.stats_response"
        assert stats["endpoints"][0]["num_requests"] == 1
        assert stats["started"].endswith("Z")
