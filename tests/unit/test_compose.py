"""The compose stack, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

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


# --- Prometheus, Tempo's metrics generator and Grafana agree on names and ports ----------


def _config(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def _flag(command: list[str], name: str) -> str | None:
    """The value of ``--name=value`` (or ``--name value``) in a command line."""
    for i, arg in enumerate(command):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(command):
            return command[i + 1]
    return None


def listening_ports(compose: dict) -> dict[str, set[int]]:
    """What each service listens on inside the compose network, from its own configuration."""
    services = compose["services"]
    tempo = _config("tempo.yaml")
    prometheus = _flag(services["prometheus"]["command"], "--web.listen-address")
    return {
        "tempo": {tempo["server"]["http_listen_port"]},
        "prometheus": {int((prometheus or ":9090").rsplit(":", 1)[1])},
        "collector": {int(_flag(services["collector"]["command"], "--metrics-port") or 0)},
        "dashboard": {int(_flag(services["dashboard"]["command"], "--port") or 0)},
    }


def test_prometheus_scrapes_services_on_the_ports_they_listen_on(compose: dict) -> None:
    config = _config("prometheus.yml")
    ports = listening_ports(compose)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"natsmesh-collector", "natsmesh-dashboard", "tempo"} <= set(jobs)
    for name, job in jobs.items():
        for target in (t for c in job["static_configs"] for t in c["targets"]):
            host, port = target.rsplit(":", 1)
            assert host in compose["services"], f"{name}: {host} is not a compose service"
            assert int(port) in ports.get(host, set()), f"{name}: {host} does not listen on {port}"
    assert (
        "./prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (compose["services"]["prometheus"]["volumes"])
    )
    assert _flag(compose["services"]["prometheus"]["command"], "--config.file") == (
        "/etc/prometheus/prometheus.yml"
    )


def test_tempo_metrics_generator_writes_to_prometheus(compose: dict) -> None:
    tempo = _config("tempo.yaml")
    generator = tempo["metrics_generator"]
    [remote] = generator["storage"]["remote_write"]
    url = urlsplit(remote["url"])
    assert url.hostname == "prometheus" and url.hostname in compose["services"]
    assert url.port in listening_ports(compose)["prometheus"]
    assert url.path == "/api/v1/write"
    assert "--web.enable-remote-write-receiver" in compose["services"]["prometheus"]["command"]
    processors = tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert set(processors) == {"service-graphs", "span-metrics"}
    assert generator["storage"]["path"].startswith("/var/tempo/")  # the tempo-data volume
    assert any(v.endswith(":/var/tempo") for v in compose["services"]["tempo"]["volumes"])


def test_grafana_datasources_and_dashboards_agree(compose: dict) -> None:
    sources = {}
    for path in (DEPLOY / "grafana/provisioning/datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            sources[ds["uid"]] = ds
    prometheus = sources["prometheus"]
    url = urlsplit(prometheus["url"])
    assert url.hostname == "prometheus"
    assert url.port in listening_ports(compose)["prometheus"]
    assert sources["tempo"]["jsonData"]["serviceMap"]["datasourceUid"] == "prometheus"
    grafana = compose["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    for path in (DEPLOY / "grafana/dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] in sources, f"{path.name}: {panel['title']}"


def _exposed_names() -> set[str]:
    """Every series name natsmesh's /metrics can expose (a figure of each kind absorbed)."""
    from prometheus_client.parser import text_string_to_metric_families

    from natsmesh.tracing.metrics import MeshMetrics
    from natsmesh.tracing.metrics_feed import CollectorMetrics
    from natsmesh.wire import SpanMessage

    metrics = MeshMetrics()
    attrs = {"mesh.tool": "t", "mesh.agent": "a", "gen_ai.usage.input_tokens": 1}
    for kind in (1, 2):
        metrics.absorb(SpanMessage("0" * 32, "0" * 16, "t", 0, 1, "a", kind=kind, attrs=attrs))
    metrics.set_instances(
        [{"id": "i", "name": "a", "metadata": {"in_flight": 0, **dict.fromkeys(
            ("spans_published", "spans_acked", "spans_dropped", "spans_failed"), 0
        )}}]
    )  # fmt: skip

    class Stub:
        exported = failures = rejected = 0
        on_exported = None

    own = CollectorMetrics.__new__(CollectorMetrics)
    own.collector = Stub()  # type: ignore[assignment]
    metrics.add_source(own._own)
    return {
        sample.name
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }


#: the series Tempo's metrics generator writes (span metrics and service graphs)
TEMPO_SERIES = re.compile(r"^traces_(spanmetrics|service_graph)_[a-z_]+$")


def test_every_metric_a_dashboard_queries_exists() -> None:
    exposed = _exposed_names()
    queried = set()
    for path in (DEPLOY / "grafana/dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queried |= set(
                    re.findall(r"\b((?:natsmesh|traces)_[a-z_]+)\b", target.get("expr", ""))
                )
    assert queried, "the RED dashboard queries Prometheus"
    for name in queried:
        assert name in exposed or TEMPO_SERIES.match(name), f"{name} is exposed by nothing"
    assert any(n.startswith("traces_") for n in queried), "Tempo's span metrics are shown"


def test_tempo_receives_otlp() -> None:
    config = yaml.safe_load((DEPLOY / "tempo.yaml").read_text())
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert config["server"]["http_listen_port"] == 3200
