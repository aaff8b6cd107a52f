"""Our header parser gives nats-py's result on every block, odd ones included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from natsmesh.connection import MeshConnection, parse_header_lines

BLOCKS = [
    b"Mesh-Caller: cli\r\nMesh-Deadline: 1780300800000\r\ntraceparent: 00-a-b-01\r\n\r\n",
    b"Name:Value\r\nSpaced :  v  \r\n\r\n",
    b"Bad Name: x\r\nGood: y\r\n",
    b"caf\xc3\xa9: x\r\nK: caf\xc3\xa9\r\nV: \xff\xfe\r\n",
    b"no colon here\r\n: empty name\r\nA: 1\r\nA: 2\r\n",
    b"",
]


@pytest.mark.parametrize("block", BLOCKS)
def test_same_as_nats_py(block: bytes) -> None:
    assert parse_header_lines(block) == Client._parse_header_lines(block)


@given(st.binary(max_size=300))
def test_same_as_nats_py_on_any_bytes(block: bytes) -> None:
    assert parse_header_lines(block) == Client._parse_header_lines(block)


def test_the_mesh_connection_uses_it() -> None:
    assert MeshConnection._parse_header_lines is parse_header_lines or (
        MeshConnection._parse_header_lines(BLOCKS[0]) == parse_header_lines(BLOCKS[0])
    )
