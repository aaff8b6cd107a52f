"""A local NATS cluster for tests and trials: three nats-servers on loopback, routed together."""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path

from natsmesh.server import (
    PING_INTERVAL,
    PING_MAX,
    RunningServer,
    ServerError,
    healthy,
    start_server,
)


def free_port() -> int:
    """A port that was free a moment ago (cluster routes must be known before start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_config(
    name: str, client: int, route: int, store: Path, routes: list[int], cluster: str
) -> str:
    """The config file of one node."""
    route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    return (
        f'server_name: "{name}"\n'
        f'listen: "127.0.0.1:{client}"\n'
        f'ping_interval: "{PING_INTERVAL}"\nping_max: {PING_MAX}\n'
        f'jetstream {{ store_dir: "{store}" }}\n'
        f'cluster {{\n  name: "{cluster}"\n  listen: "127.0.0.1:{route}"\n  routes: [{route_urls}]\n}}\n'
    )


@dataclasses.dataclass
class Cluster:
    """Three running nodes."""

    nodes: list[RunningServer]
    configs: list[Path]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(
    root: Path, size: int = 3, name: str = "natsmesh", timeout: float = 30
) -> Cluster:
    """Start ``size`` routed nodes with JetStream and wait until each is healthy."""
    clients = [free_port() for _ in range(size)]
    routes = [free_port() for _ in range(size)]
    configs = []
    for i in range(size):
        folder = root / f"n{i + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "nats.conf"
        path.write_text(
            node_config(f"n{i + 1}", clients[i], routes[i], folder / "js", routes, name)
        )
        configs.append(path)
    nodes = [
        start_server(root / f"n{i + 1}", config_file=configs[i], timeout=timeout, health=False)
        for i in range(size)
    ]
    deadline = time.monotonic() + timeout
    while not all(healthy(n.monitor_url, js_enabled_only=False) for n in nodes):
        if time.monotonic() > deadline:
            for n in nodes:
                n.stop()
            raise ServerError("the cluster did not become healthy (JetStream meta leader?)")
        time.sleep(0.1)
    return Cluster(nodes, configs)
