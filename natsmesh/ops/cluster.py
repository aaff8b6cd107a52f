"""A local NATS cluster for tests and trials: three nats-servers on loopback, routed together."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from natsmesh.ops.server import (
    PING_INTERVAL,
    PING_MAX,
    RunningServer,
    ServerError,
    healthy,
    start_server,
)


@contextlib.contextmanager
def reserved_ports(count: int, host: str = "127.0.0.1") -> Iterator[list[int]]:
    """``count`` free ports, held until the block ends, that nats-server may still listen on.

    Each port is bound (``SO_REUSEADDR``, never listening) for the whole block: the kernel
    hands it to no one else asking for a free port, and connections to it are refused,
    while nats-server (Go sets ``SO_REUSEADDR`` on its listeners) can bind and listen on
    it. So there is no window between choosing a port and a server taking it.
    """
    holders = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            holders.append(sock)
        yield [int(sock.getsockname()[1]) for sock in holders]
    finally:
        for sock in holders:
            sock.close()


def node_config(name: str, route: int, store: Path, routes: list[int], cluster: str) -> str:
    """The config file of one node: client and monitoring ports are picked by the server
    (``-1``) and read from its ports file; the route ports are reserved ones."""
    route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    return (
        f'server_name: "{name}"\n'
        'listen: "127.0.0.1:-1"\n'
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
    configs: list[Path] = []
    nodes: list[RunningServer] = []
    # every node must know every route port before it starts: hold them until all listen
    with reserved_ports(size) as routes:
        for i in range(size):
            folder = root / f"n{i + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "nats.conf"
            path.write_text(node_config(f"n{i + 1}", routes[i], folder / "js", routes, name))
            configs.append(path)
        try:
            for i in range(size):
                node = start_server(
                    configs[i].parent, config_file=configs[i], timeout=timeout, health=False
                )
                nodes.append(node)
        except ServerError:
            for n in nodes:
                n.stop()
            raise
    deadline = time.monotonic() + timeout
    while not all(healthy(n.monitor_url, js_enabled_only=False) for n in nodes):
        if time.monotonic() > deadline:
            for n in nodes:
                n.stop()
            raise ServerError("the cluster did not become healthy (JetStream meta leader?)")
        time.sleep(0.1)
    return Cluster(nodes, configs)
