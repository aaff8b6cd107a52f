"""Reserved ports: held against everyone asking for a free port, yet usable by nats-server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from natsmesh.ops.cluster import reserved_ports
from natsmesh.ops.server import start_server


def test_a_reserved_port_is_never_handed_out_and_refuses_connections() -> None:
    with reserved_ports(2) as ports:
        others = []
        try:
            for _ in range(500):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", 0))
                others.append(sock)
            assert not {s.getsockname()[1] for s in others} & set(ports)
        finally:
            for sock in others:
                sock.close()
        for port in ports:
            with socket.socket() as taker, pytest.raises(OSError, match="in use"):
                taker.bind(("127.0.0.1", port))
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_nats_server_listens_on_a_reserved_port(tmp_path: Path) -> None:
    with reserved_ports(1) as [port]:
        server = start_server(tmp_path, port=port)
        try:
            assert server.url == f"nats://127.0.0.1:{port}"
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        finally:
            server.stop()
