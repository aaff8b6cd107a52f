"""The compose stack, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AGENTS = [
    "user-prefs-agent",
    "flight-agent",
    "hotel-agent",
    "weather-agent",
    "poi-agent",
    "claude-provider",
    "openai-provider",
    "planner-agent",
]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yml").read_text())


def ports(service: dict) -> set[str]:
    return {str(p).split(":")[0] for p in service.get("ports", [])}


def test_every_service_has_an_image_or_build(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build:
            dockerfile = (
                DEPLOY / build["context"] / build.get("dockerfile", "Dockerfile")
            ).resolve()
            assert dockerfile.is_file(), name


def test_ports_and_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert "4222" in ports(services["nats"])
    assert {"3200", "4317"} <= ports(services["tempo"])
    assert "3000" in ports(services["grafana"])
    for name in ("nats", "tempo", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert "-js" in services["nats"]["command"]


def test_mounted_config_files_exist(compose: dict) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


def test_agents_and_collector_run_from_the_project_image(compose: dict) -> None:
    services = compose["services"]
    root = DEPLOY.parent
    for name in AGENTS:
        service = services[name]
        assert service["environment"]["NATS_URL"] == "nats://nats:4222"
        assert (root / service["command"][0]).is_file(), name
        assert service["depends_on"]["nats"]["condition"] == "service_healthy"
    collector = services["collector"]
    assert collector["entrypoint"][:2] == ["natsmesh", "collector"]
    assert "http://tempo:4317" in collector["command"]


def test_grafana_datasource_points_at_tempo(compose: dict) -> None:
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/tempo.yaml").read_text()
    )
    [tempo] = datasource["datasources"]
    assert tempo["type"] == "tempo"
    assert tempo["url"] == "http://tempo:3200"
    assert "tempo" in compose["services"]
    dashboard = json.loads((DEPLOY / "grafana/dashboards/natsmesh.json").read_text())
    assert all(p["datasource"]["uid"] == tempo["uid"] for p in dashboard["panels"])


def test_tempo_receives_otlp() -> None:
    config = yaml.safe_load((DEPLOY / "tempo.yaml").read_text())
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert config["server"]["http_listen_port"] == 3200
