"""Property tests: whatever arrives as a request, the worker answers clearly and keeps serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natsmesh.loader import load_file
from natsmesh.ops.server import RunningServer
from natsmesh.runtime import Runtime
from tests.conftest import mesh_settings
from tests.helpers import TEST_AGENTS

ERROR_TYPES = {
    "invalid_arguments",
    "tool_error",
    "timeout",
    "payload_too_large",
    "tag_mismatch",
    "unavailable",
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,30}", fullmatch=True)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


class Harness:
    def __init__(self, server: RunningServer) -> None:
        self.loop = asyncio.new_event_loop()
        self.settings = mesh_settings(server.url)
        loaded = load_file(TEST_AGENTS / "echo_agent.py")
        self.runtime = Runtime(loaded.agent, loaded.tools, self.settings)
        self.run(self.runtime.start())
        self.nc = self.run(nats.connect(server.url))
        self.subject = f"{self.settings.prefix}.cap.echo.echo-agent"

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def request(self, body: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
        reply = self.run(self.nc.request(self.subject, body, timeout=5, headers=headers))
        envelope = json.loads(reply.data)
        assert set(envelope) in ({"result"}, {"error"}), envelope
        if "error" in envelope:
            error = envelope["error"]
            assert error["type"] in ERROR_TYPES
            assert isinstance(error["message"], str) and error["message"]
        return envelope

    def still_serves(self) -> None:
        assert self.request(b'{"text": "ok"}') == {
            "result": {"text": "ok", "pid": self.pid, "padding": ""}
        }

    @property
    def pid(self) -> int:
        import os

        return os.getpid()

    def close(self) -> None:
        self.run(self.nc.close())
        self.run(self.runtime.stop(grace=1))
        self.loop.close()


@pytest.fixture(scope="module")
def harness(nats_server: RunningServer) -> Iterator[Harness]:
    h = Harness(nats_server)
    yield h
    h.close()


fuzz = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@fuzz
@given(body=st.binary(max_size=2000))
def test_random_bytes(harness: Harness, body: bytes) -> None:
    harness.request(body)
    harness.still_serves()


@fuzz
@given(value=json_values)
def test_random_json(harness: Harness, value: Any) -> None:
    harness.request(json.dumps(value).encode())
    harness.still_serves()


@fuzz
@given(
    headers=st.dictionaries(header_names, header_values, max_size=8),
    traceparent=st.text(max_size=80),
)
def test_random_headers_and_traceparent(
    harness: Harness, headers: dict[str, str], traceparent: str
) -> None:
    printable = "".join(c for c in traceparent if 32 <= ord(c) < 127)
    harness.request(b'{"text": "x"}', {**headers, "traceparent": printable or "-"})
    harness.still_serves()


def test_special_bodies(harness: Harness) -> None:
    cases = [
        b"[" * 10_000 + b"]" * 10_000,  # deeply nested
        b'{"text": "' + b"\xff\xfe" * 100 + b'"}',  # invalid UTF-8
        b'{"text": "x", "text": "y"}',
        b"null",
        b"",
        b'{"text": "' + b"a" * 900_000 + b'"}',  # large but under the max payload
    ]
    for body in cases:
        harness.request(body)
        harness.still_serves()


def test_oversized_headers(harness: Harness) -> None:
    harness.request(
        b"{}", {"X-Big": "v" * 100_000, "Mesh-Deadline": "not-a-number", "Mesh-Tags": "a,,b,+,-"}
    )
    harness.still_serves()


def test_over_max_payload_is_refused_by_the_client(harness: Harness) -> None:
    with pytest.raises(nats.errors.MaxPayloadError):
        harness.run(
            harness.nc.request(harness.subject, b"x" * (harness.nc.max_payload + 1), timeout=2)
        )
    harness.still_serves()
