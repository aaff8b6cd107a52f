"""Failover, resends and streams against a fake transport: the client's decisions without NATS."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from natsmesh import headers as H
from natsmesh import protocol
from natsmesh.client import MeshClient
from natsmesh.config import Settings
from natsmesh.errors import MeshError, TagMismatch, ToolError, Unavailable
from natsmesh.registry import RegistryView
from natsmesh.transport import Inbox, NoResponders
from natsmesh.wire import AgentRecord, ToolRecord


@dataclasses.dataclass
class Msg:
    subject: str
    reply: str
    data: bytes
    headers: dict[str, str] | None


Reply = tuple[bytes, dict[str, str]]
Handler = Callable[[str, dict[str, Any], dict[str, str]], list[Reply] | None]


class FakeTransport:
    """Requests go to ``handler(subject, arguments, headers)``, which returns the messages
    the reply subject receives (``None``: nobody subscribes). Pings: ``alive(instance)``."""

    max_payload = 1 << 20
    state = "connected"

    def __init__(self, handler: Handler, alive: Callable[[str], bool] = lambda _: True) -> None:
        self.handler = handler
        self.alive = alive
        self.sent: list[tuple[str, dict[str, str]]] = []
        self._boxes: dict[str, Inbox] = {}
        self._n = 0

    async def publish(
        self, subject: str, body: bytes, headers: Any = None, reply: str = ""
    ) -> None:
        hdrs = dict(headers or {})
        self.sent.append((subject, hdrs))
        if not reply:
            return
        replies = self.handler(subject, msgspec.json.decode(body), hdrs)
        if replies is None:
            replies = [(b"", {H.STATUS: H.NO_RESPONDERS})]
        for data, rh in replies:
            box = self._boxes.get(reply)
            if box is not None:
                box.put(Msg(reply, "", data, rh))

    async def request(self, subject: str, body: bytes, timeout: float, headers: Any = None) -> Any:
        if not self.alive(subject.rsplit(".", 1)[-1]):
            raise NoResponders(subject)
        return Msg(subject, "", b"{}", {})

    async def inbox(self) -> Inbox:
        self._n += 1
        subject = f"_INBOX.fake.{self._n}"
        box = Inbox(subject, lambda s: self._boxes.pop(s, None))
        self._boxes[subject] = box
        return box


def record(agent: str, instance: str, **tool: Any) -> AgentRecord:
    return AgentRecord(
        name=agent,
        instance_id=instance,
        version="1.0.0",
        description="",
        host="h",
        pid=1,
        started_at=0,
        tools=(ToolRecord(name="t", capability="cap", **tool),),
        protocol=2,
    )


def client(transport: FakeTransport, *records: AgentRecord) -> MeshClient:
    view = RegistryView(None)  # type: ignore[arg-type]
    view.records = {f"{r.name}.{r.instance_id}": r for r in records}
    return MeshClient(None, view, Settings(timeout=5), transport=transport)


def result(value: Any, instance: str = "") -> Reply:
    return msgspec.json.encode({"result": value}), {H.INSTANCE: instance}


def error(kind: str, instance: str = "") -> Reply:
    body = {"error": {"type": kind, "message": kind, "details": {}}}
    return msgspec.json.encode(body), {H.INSTANCE: instance, H.ERROR: kind}


async def test_no_responders_fails_over_to_the_next_provider() -> None:
    def handler(subject: str, args: dict[str, Any], hdrs: dict[str, str]) -> list[Reply] | None:
        return None if subject.endswith(".a") else [result("from b")]

    t = FakeTransport(handler)
    mesh = client(t, record("a", "a-1", tags=("x",)), record("b", "b-1"))
    assert await mesh.call("cap", {}, tags="+x") == "from b"
    assert [s for s, _ in t.sent] == ["mesh.cap.cap.a", "mesh.cap.cap.b"]


async def test_an_overloaded_replica_offers_the_call_to_its_siblings() -> None:
    def handler(subject: str, args: dict[str, Any], hdrs: dict[str, str]) -> list[Reply] | None:
        if subject == "mesh.cap.cap.a":
            return [error("unavailable", "a-1")]
        return [result(subject)]

    t = FakeTransport(handler)
    mesh = client(t, record("a", "a-1"), record("a", "a-2"))
    assert await mesh.call("cap", {}) == "mesh.inst.a-2.cap"


async def test_tag_mismatch_fails_over_and_a_tool_error_does_not() -> None:
    def handler(subject: str, args: dict[str, Any], hdrs: dict[str, str]) -> list[Reply] | None:
        if subject.endswith(".a"):
            return [error("tag_mismatch" if args.get("stale") else "tool_error", "a-1")]
        return [result("b")]

    t = FakeTransport(handler)
    mesh = client(t, record("a", "a-1", tags=("x",)), record("b", "b-1"))
    assert await mesh.call("cap", {"stale": True}, tags="+x") == "b"
    with pytest.raises(ToolError):
        await mesh.call("cap", {}, tags="+x")
    only_a = client(FakeTransport(lambda *_: [error("tag_mismatch", "a-1")]), record("a", "a-1"))
    with pytest.raises(TagMismatch):
        await only_a.call("cap", {})


async def test_a_lost_instance_resends_an_idempotent_call_and_fails_a_plain_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "ACCEPT_TIMEOUT", 0.01)
    monkeypatch.setattr(protocol, "PING_INTERVAL", 0.01)
    attempts: list[str] = []

    def handler(subject: str, args: dict[str, Any], hdrs: dict[str, str]) -> list[Reply] | None:
        attempts.append(subject)
        if len(attempts) == 1:  # the first attempt is accepted by a-1, which then dies
            return [(b"", {H.KIND: H.ACCEPTED, H.INSTANCE: "a-1"})]
        return [result("again")]

    t = FakeTransport(handler, alive=lambda inst: inst != "a-1")
    mesh = client(t, record("a", "a-1", idempotent=True), record("a", "a-2", idempotent=True))
    assert await mesh.call("cap", {}) == "again"
    assert attempts == ["mesh.cap.cap.a", "mesh.cap.cap.a"], "resent through the queue group"

    attempts.clear()
    t = FakeTransport(handler, alive=lambda inst: inst != "a-1")
    plain = client(t, record("a", "a-1"), record("a", "a-2"))
    with pytest.raises(Unavailable) as info:
        await plain.call("cap", {})
    assert info.value.details["outcome"] == "unknown"
    assert info.value.details["instance"] == "a-1"
    assert attempts == ["mesh.cap.cap.a"], "never sent twice"


async def test_chunks_stream_and_a_gap_is_reported() -> None:
    def chunks(seqs: list[int]) -> Handler:
        def handler(subject: str, args: dict[str, Any], hdrs: dict[str, str]) -> list[Reply]:
            assert hdrs[H.STREAM] == "1" and hdrs[H.PROTOCOL] == "2"
            out = [(b"", {H.KIND: H.ACCEPTED, H.INSTANCE: "a-1"})]
            out += [(str(i).encode(), {H.KIND: H.CHUNK, H.SEQ: str(i)}) for i in seqs]
            return [*out, result(sum(seqs))]

        return handler

    mesh = client(FakeTransport(chunks([1, 2, 3])), record("a", "a-1", stream=True))
    async with mesh.stream("cap", {}) as parts:
        assert [p async for p in parts] == [1, 2, 3]
    assert parts.result == 6
    mesh = client(FakeTransport(chunks([1, 3])), record("a", "a-1", stream=True))
    with pytest.raises(MeshError, match="lost"):
        async with mesh.stream("cap", {}) as parts:
            _ = [p async for p in parts]
