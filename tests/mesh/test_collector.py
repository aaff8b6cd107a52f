"""The collector against real OTLP receivers, gRPC (the default) and HTTP: every span once,
nothing lost while the receiver is down, authentication headers and compression sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bench.receivers import GrpcReceiver, HttpReceiver, Receiver
from natsmesh import subjects, wire
from natsmesh.client import CallContext
from natsmesh.config import Settings
from natsmesh.ops.cluster import reserved_ports
from natsmesh.session import connect
from natsmesh.tracing.collector import Collector, OtlpSender
from natsmesh.tracing.context import format_traceparent, new_span_id, new_trace_id
from natsmesh.tracing.otlp import parse_headers


def spans_of(receiver: Receiver) -> list[tuple[str, str, str, dict, dict]]:
    out = []
    for request in receiver.requests:
        for rs in request.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attrs = {a.key: a.value for a in s.attributes}
                    out.append(
                        (s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), resource, attrs)
                    )
    return out


async def make_traces(mesh, n: int) -> set[str]:
    ids = set()
    for _ in range(n):
        trace_id = new_trace_id()
        ids.add(trace_id)
        ctx = CallContext(traceparent=format_traceparent(trace_id, new_span_id()))
        await mesh.call(
            "flight_search", {"origin": "A", "destination": "B", "date": "d"}, context=ctx
        )
    return ids


async def wait_for_spans(receiver: Receiver, changed: asyncio.Event, count: int) -> None:
    async with asyncio.timeout(20):
        while receiver.spans < count:
            changed.clear()
            await changed.wait()


@contextlib.asynccontextmanager
async def running(collector: Collector) -> AsyncIterator[asyncio.Task[None]]:
    """The collector running until the block ends (then stopped and awaited)."""
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await task


async def settled(nc: Any, js: Any, settings: Settings) -> Any:
    """The collector's consumer once the acks sent so far have reached the server."""
    await nc.flush()
    return await js.consumer_info(settings.spans_stream, subjects.SPANS_CONSUMER)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_collector_exports_every_span_once_and_survives_an_outage(
    start_agents, settings: Settings, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=tenant-1")
    runtimes = await start_agents("user_prefs_agent", "flight_agent")
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = (GrpcReceiver if protocol == "grpc" else HttpReceiver)(
        lambda: loop.call_soon_threadsafe(changed.set)
    )
    # the receiver's port is reserved and refuses connections until the receiver starts on it
    with reserved_ports(1) as [port]:
        sender = OtlpSender(
            f"http://127.0.0.1:{port}",
            protocol,
            timeout=1,
            headers=parse_headers(["Authorization=Bearer s3cret"]),
            compression="gzip",
        )
        async with connect(settings) as mesh:
            await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=5)
            collector = Collector(mesh.nc, settings, sender, retry_delay=0.2)
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run(stop))
            first = await make_traces(mesh, 10)
            prefs, flight = runtimes
            await prefs.tracing.processor.wait_until(lambda p: p.acked >= 10, 5)
            await flight.tracing.processor.wait_until(lambda p: p.acked >= 20, 5)
            # the receiver is down: exports fail and the spans wait in the stream
            await collector.wait_until(lambda c: c.failures >= 2, 15)
            assert receiver.spans == 0 and collector.exported == 0
            receiver.start(port)
            try:
                second = await make_traces(mesh, 10)
                # per call: flight SERVER, flight CLIENT, prefs SERVER
                await wait_for_spans(receiver, changed, 60)
                await collector.wait_until(lambda c: c.exported >= 60, 5)
            finally:
                stop.set()
                await task
                receiver.stop()
                sender.close()
    spans = spans_of(receiver)
    span_ids = [s[1] for s in spans]
    assert len(span_ids) == len(set(span_ids)) == 60, "every span exactly once"
    assert collector.exported == 60
    assert {s[0] for s in spans} == first | second
    by_id = {s[1]: s for s in spans}
    for trace_id, _span_id, parent, resource, attrs in spans:
        assert resource["service.name"] in {"flight-agent", "user-prefs-agent"}
        assert resource["service.instance.id"].startswith(resource["service.name"])
        assert attrs["messaging.system"].string_value == "nats"
        if resource["service.name"] == "user-prefs-agent":
            assert by_id[parent][3]["service.name"] == "flight-agent"
            assert by_id[parent][0] == trace_id
    for headers in receiver.headers:
        assert headers["authorization"] == "Bearer s3cret"
        assert headers["x-scope-orgid"] == "tenant-1"
        if protocol == "http":
            assert headers["content-encoding"] == "gzip"


def test_export_headers_and_bad_options() -> None:
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "X-Scope-OrgID=t1,api-key=a%3Db"}
    assert parse_headers(["Authorization=Bearer x", "api-key=c"], env) == {
        "x-scope-orgid": "t1",
        "api-key": "c",
        "authorization": "Bearer x",
    }
    assert parse_headers([], env)["api-key"] == "a=b"
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_headers(["no-equals-sign"], {})
    with pytest.raises(ValueError, match="http:// or https://"):
        OtlpSender("127.0.0.1:4317")
    with pytest.raises(ValueError, match="compression"):
        OtlpSender("http://127.0.0.1:4317", compression="deflate")
    with pytest.raises(ValueError, match="protocol"):
        OtlpSender("http://127.0.0.1:4317", "thrift")


async def test_batches_overlap_and_a_bad_span_blocks_nothing(settings: Settings) -> None:
    """Many small batches (one exported while the next is fetched): every good span
    exactly once; a span the encoder cannot take (a bad id) is acked and left out."""
    from natsmesh.connection import connect_nats
    from natsmesh.tracing.collector import STAGES
    from natsmesh.tracing.export import ensure_stream

    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(changed.set))
    port = receiver.start()
    sender = OtlpSender(f"http://127.0.0.1:{port}")
    nc = await connect_nats(settings, "test-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        good = 0
        for i in range(300):
            bad = i % 50 == 7
            good += not bad
            span = wire.SpanMessage(
                trace_id="not hex" if bad else f"{i + 1:032x}", span_id=f"{i + 1:016x}",
                name="s", start=1, end=2, service=f"svc{i % 3}",
            )  # fmt: skip
            await js.publish(
                subjects.spans_subject(f"{i + 1:032x}", settings.prefix), wire.encode_span(span)
            )
        collector = Collector(nc, settings, sender, batch=16)
        async with running(collector):
            await wait_for_spans(receiver, changed, good)
            await collector.wait_until(lambda c: c.exported >= good, 5)
            await nc.flush()  # the acks went before the count rose; the server has them now
            info = await js.consumer_info(settings.spans_stream, subjects.SPANS_CONSUMER)
            # every message acked, the bad ones too: nothing is left to redeliver
            assert (info.num_ack_pending, info.num_pending) == (0, 0)
            # a batch fetched ahead may wait for two sends before its own: 3 timeouts
            assert info.config.ack_wait == 3 * sender.timeout + 15
    finally:
        sender.close()
        receiver.stop()
        await nc.close()
    ids = [s[1] for s in spans_of(receiver)]
    assert len(ids) == len(set(ids)) == good == collector.exported
    assert len(receiver.requests) >= 300 // 16
    assert collector.failures == 0
    assert set(collector.cpu) == set(STAGES) and collector.cpu["encode"] > 0


async def test_a_stopped_collector_hands_back_what_it_fetched_ahead(settings: Settings) -> None:
    """Stopping mid-stream: every message is either exported and acked, or back in the
    stream at once for the next collector (a batch fetched ahead is nak'ed, not left to
    its 30 s ack timeout)."""
    from natsmesh.connection import connect_nats
    from natsmesh.tracing.export import ensure_stream

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(stop.set))
    port = receiver.start()
    sender = OtlpSender(f"http://127.0.0.1:{port}")
    nc = await connect_nats(settings, "test-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        for i in range(200):
            span = wire.SpanMessage(
                trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", name="s", start=1, end=2,
                service="svc",
            )  # fmt: skip
            await js.publish(
                subjects.spans_subject(span.trace_id, settings.prefix), wire.encode_span(span)
            )
        first = Collector(nc, settings, sender, batch=10)
        await first.run(stop)  # the first export sets stop
        assert 10 <= first.exported < 200
        receiver.on_request = None
        second = Collector(nc, settings, sender, batch=10)
        stop.clear()
        task = asyncio.create_task(second.run(stop))
        try:
            await second.wait_until(lambda c: first.exported + c.exported >= 200, 10)
        finally:
            stop.set()
            await task
    finally:
        sender.close()
        receiver.stop()
        await nc.close()
    ids = [s[1] for s in spans_of(receiver)]
    assert len(ids) == len(set(ids)) == 200


async def test_span_batches_are_exported_in_requests_of_batch_spans(settings: Settings) -> None:
    """Messages carrying 25 spans each (as busy agents send them): every span once, every
    message acked, and no request over the collector's batch of spans."""
    from natsmesh.connection import connect_nats
    from natsmesh.tracing.export import ensure_stream

    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(changed.set))
    port = receiver.start()
    sender = OtlpSender(f"http://127.0.0.1:{port}")
    nc = await connect_nats(settings, "test-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        for m in range(40):
            batch = [
                wire.SpanMessage(trace_id=f"{m % 16:x}{m + 1:07x}{i:024x}", span_id=f"{m * 25 + i + 1:016x}",
                                 name="s", start=1, end=2, service="svc")
                for i in range(25)
            ]  # fmt: skip
            await js.publish(
                subjects.spans_subject(batch[0].trace_id, settings.prefix), wire.encode_spans(batch)
            )
        collector = Collector(nc, settings, sender, batch=100)
        async with running(collector):
            await wait_for_spans(receiver, changed, 1000)
            await collector.wait_until(lambda c: c.exported >= 1000, 5)
            info = await settled(nc, js, settings)
            assert (info.num_ack_pending, info.num_pending) == (0, 0)
    finally:
        sender.close()
        receiver.stop()
        await nc.close()
    ids = [s[1] for s in spans_of(receiver)]
    assert len(ids) == len(set(ids)) == 1000 == collector.exported
    sizes = [
        sum(len(ss.spans) for rs in r.resource_spans for ss in rs.scope_spans)
        for r in receiver.requests
    ]
    assert max(sizes) <= 100


async def test_the_collector_carries_on_after_nats_restarts(tmp_path, reserved_port: int) -> None:
    """nats-server dies and comes back (same port, same store): spans published before,
    and after, all reach the receiver."""
    from natsmesh.connection import Hooks, connect_nats
    from natsmesh.ops.server import start_server
    from natsmesh.tracing.export import ensure_stream
    from tests.conftest import mesh_settings

    server = start_server(tmp_path / "nats", port=reserved_port)
    settings = mesh_settings(server.url)
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(changed.set))
    sender = OtlpSender(f"http://127.0.0.1:{receiver.start()}")
    hooks = Hooks()
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    hooks.on_reconnect.append(on_reconnect)
    nc = await connect_nats(settings, "test-collector", hooks)

    async def publish(first: int, n: int) -> None:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        batch = [
            wire.SpanMessage(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", name="s",
                             start=1, end=2, service="svc")
            for i in range(first, first + n)
        ]  # fmt: skip
        for i in range(0, n, 10):
            await js.publish(
                subjects.spans_subject(batch[i].trace_id, settings.prefix),
                wire.encode_spans(batch[i : i + 10]),
            )

    collector = Collector(nc, settings, sender, batch=50, retry_delay=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    try:
        await publish(0, 100)
        await wait_for_spans(receiver, changed, 100)
        server.kill()  # no goodbye: the pull request waiting there is never answered
        server.stop()
        server = start_server(tmp_path / "nats", port=reserved_port)
        await asyncio.wait_for(reconnected.wait(), 15)
        await publish(100, 100)
        async with asyncio.timeout(20):  # 200 different spans (some may come twice)
            while len({s[1] for s in spans_of(receiver)}) < 200:
                changed.clear()
                await changed.wait()
    finally:
        stop.set()
        await task
        sender.close()
        receiver.stop()
        await nc.close()
        server.stop()
    # every span; a few twice: acks the killed server had not yet stored (at least once)
    assert {s[1] for s in spans_of(receiver)} == {f"{i + 1:016x}" for i in range(200)}


def numbered_spans(first: int, n: int, **attrs: object) -> list:
    return [
        wire.SpanMessage(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", name="s", start=1,
                         end=2, service="svc", attrs=dict(attrs))
        for i in range(first, first + n)
    ]  # fmt: skip


async def publish_spans(js, settings: Settings, spans: list, per_message: int) -> None:

    for i in range(0, len(spans), per_message):
        batch = spans[i : i + per_message]
        await js.publish(
            subjects.spans_subject(batch[0].trace_id, settings.prefix), wire.encode_spans(batch)
        )


async def wait_for(check, timeout: float = 10.0) -> None:
    """Until the coroutine function ``check`` returns true (it may raise meanwhile)."""
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(Exception):
                if await check():
                    return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("deleted", ["consumer", "stream"])
async def test_a_deleted_consumer_or_stream_is_recreated_without_spinning(
    settings: Settings, deleted: str
) -> None:
    """The consumer (or its whole stream) is deleted under a running collector: it does not
    spin on the error statuses (a handful of messages while it cannot recover, where it
    used to send thousands of pull requests a second), re-creates what is missing, and
    exports the spans published afterwards. (The collector's messages are counted on its
    own connection: a subscriber to the pull subject would answer for the deleted
    consumer and hide the server's "no responders".)"""
    from nats.js.api import StreamConfig

    from natsmesh.connection import connect_nats
    from natsmesh.tracing.export import ensure_stream

    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(changed.set))
    sender = OtlpSender(f"http://127.0.0.1:{receiver.start()}")
    nc = await connect_nats(settings, "test")
    collector_nc = await connect_nats(settings, "test-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        await publish_spans(js, settings, numbered_spans(0, 20), 5)
        collector = Collector(collector_nc, settings, sender, batch=50, retry_delay=0.2)
        async with running(collector) as task:
            await wait_for_spans(receiver, changed, 20)
            if deleted == "consumer":
                await js.delete_consumer(settings.spans_stream, subjects.SPANS_CONSUMER)
            else:
                # another stream takes the subjects: the collector cannot re-create its own
                await js.delete_stream(settings.spans_stream)
                blocker = f"{settings.spans_stream}-BLOCKER"
                wildcard = subjects.spans_wildcard(settings.prefix)
                await js.add_stream(StreamConfig(name=blocker, subjects=[wildcard]))
                sent = collector_nc.stats["out_msgs"]
                await asyncio.sleep(1.0)  # an observation window, not a synchronisation
                # 5 rounds a second (retry_delay 0.2): a pull request, then the stream
                # and the consumer looked up and re-created (failing); without, thousands
                sent = collector_nc.stats["out_msgs"] - sent
                assert sent <= 60, f"{sent} messages in about 1 s"
                assert not task.done()
                await js.delete_stream(blocker)

            async def recovered() -> bool:
                info = await js.consumer_info(settings.spans_stream, subjects.SPANS_CONSUMER)
                return info is not None

            await wait_for(recovered)
            await publish_spans(js, settings, numbered_spans(20, 20), 5)
            async with asyncio.timeout(20):
                while not {f"{i + 1:016x}" for i in range(20, 40)} <= {
                    s[1] for s in spans_of(receiver)
                }:
                    changed.clear()
                    await changed.wait()
    finally:
        sender.close()
        receiver.stop()
        await collector_nc.close()
        await nc.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_a_failed_request_alone_is_retried_and_a_rejected_one_dropped(
    settings: Settings, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch split in four requests: the second fails (an authentication error: kept,
    tried again, it alone), the third is rejected for good (HTTP 400, INVALID_ARGUMENT:
    logged, acked and counted, not retried). Every span the receiver took arrives exactly
    once; a second collector gets none of the batch, kept in progress past its ack wait."""
    from natsmesh.connection import connect_nats
    from natsmesh.tracing import collector as collector_module
    from natsmesh.tracing.export import ensure_stream

    # a 2 s ack wait, shorter than the retries (8 × 0.4 s): redelivered unless in progress
    monkeypatch.setattr(collector_module, "MIN_ACK_WAIT", 2.0)
    monkeypatch.setattr(collector_module, "ACK_WAIT_MARGIN", 0.0)
    failing = "UNAUTHENTICATED" if protocol == "grpc" else (401, {})
    rejecting = "INVALID_ARGUMENT" if protocol == "grpc" else (400, {})
    kind = GrpcReceiver if protocol == "grpc" else HttpReceiver
    receiver, other_receiver = kind(), kind()
    receiver.planned = [None, *[failing] * 8, None, rejecting, None]
    sender = OtlpSender(f"http://127.0.0.1:{receiver.start()}", protocol, timeout=0.1)
    other_sender = OtlpSender(f"http://127.0.0.1:{other_receiver.start()}", protocol)
    nc = await connect_nats(settings, "test-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        spans = numbered_spans(0, 40)
        await publish_spans(js, settings, spans, 10)
        collector = Collector(nc, settings, sender, batch=10, retry_delay=0.4)
        other = Collector(nc, settings, other_sender, batch=10)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        other_task = None
        try:
            await collector.wait_until(lambda c: c.failures >= 1, 10)  # it holds the batch
            other_task = asyncio.create_task(other.run(stop))
            await collector.wait_until(lambda c: c.exported + c.rejected >= 40, 20)
            info = await settled(nc, js, settings)
            assert (info.num_ack_pending, info.num_pending) == (0, 0)
            assert info.num_redelivered == 0
        finally:
            stop.set()
            await task
            if other_task is not None:
                await other_task
    finally:
        sender.close()
        other_sender.close()
        receiver.stop()
        other_receiver.stop()
        await nc.close()
    assert (collector.exported, collector.rejected, collector.failures) == (30, 10, 8)
    assert receiver.attempts == 12
    assert other.exported == other_receiver.spans == 0
    ids = [s[1] for s in spans_of(receiver)]
    assert len(ids) == len(set(ids)) == 30
    assert set(ids) == {s.span_id for s in spans[:20] + spans[30:]}


async def test_a_batch_that_breaks_the_encoder_is_dropped_not_fatal(settings: Settings) -> None:
    """A span whose attribute is a list nested 400 deep (a RecursionError for a naive
    encoder): the collector does not die; the span goes out with the deep part as a
    string, and so do the spans around it."""
    from natsmesh.connection import connect_nats
    from natsmesh.tracing.export import ensure_stream

    deep: list = []
    for _ in range(400):
        deep = [deep]
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(changed.set))
    sender = OtlpSender(f"http://127.0.0.1:{receiver.start()}")
    nc = await connect_nats(settings, "test-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        spans = numbered_spans(0, 10) + numbered_spans(10, 1, deep=deep) + numbered_spans(11, 10)
        await publish_spans(js, settings, spans, 1)
        collector = Collector(nc, settings, sender, batch=100)
        async with running(collector) as task:
            await wait_for_spans(receiver, changed, 21)
            await collector.wait_until(lambda c: c.exported >= 21, 5)
            info = await settled(nc, js, settings)
            assert (info.num_ack_pending, info.num_pending) == (0, 0)
            assert not task.done()
    finally:
        sender.close()
        receiver.stop()
        await nc.close()
    assert len({s[1] for s in spans_of(receiver)}) == 21


async def test_a_batch_the_sender_cannot_encode_is_dropped_and_acked(settings: Settings) -> None:
    """Whatever encoding raises (a fault injected in the sender: no span the wire decodes
    breaks the encoder now) costs that batch only: logged, acked, counted in ``rejected``;
    the collector carries on with the next."""
    import msgspec

    from natsmesh.connection import connect_nats
    from natsmesh.tracing.export import ensure_stream

    class Breaking(OtlpSender):
        def requests(self, spans, per_request):  # type: ignore[no-untyped-def]
            if any(s.name == "poison" for s in spans):
                raise RecursionError("maximum recursion depth exceeded")
            return super().requests(spans, per_request)

    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    receiver = GrpcReceiver(lambda: loop.call_soon_threadsafe(changed.set))
    sender = Breaking(f"http://127.0.0.1:{receiver.start()}")
    nc = await connect_nats(settings, "test-collector")
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        poison = [msgspec.structs.replace(s, name="poison") for s in numbered_spans(0, 5)]
        await publish_spans(js, settings, poison, 5)
        collector = Collector(nc, settings, sender, batch=100)
        async with running(collector):
            await collector.wait_until(lambda c: c.rejected >= 5, 10)
            await publish_spans(js, settings, numbered_spans(5, 10), 5)
            await wait_for_spans(receiver, changed, 10)
            await collector.wait_until(lambda c: c.exported >= 10, 5)
            info = await settled(nc, js, settings)
            assert (info.num_ack_pending, info.num_pending) == (0, 0)
    finally:
        sender.close()
        receiver.stop()
        await nc.close()
    assert collector.rejected == 5 and collector.exported == 10
