"""Spans travel in batches on 16 shard subjects, and a trace is still found from its ID."""

from __future__ import annotations

import msgspec
import pytest

from natsmesh import subjects, wire
from natsmesh.config import Settings
from natsmesh.connection import connect_nats
from natsmesh.tracing import export
from natsmesh.tracing.context import new_span_id, new_trace_id
from natsmesh.tracing.export import NatsSpanProcessor, ensure_stream
from natsmesh.tracing.store import FIRST_WINDOW, read_trace
from natsmesh.wire import SpanMessage


def span(trace_id: str, name: str = "t", start: int = 1_000, **attrs: object) -> SpanMessage:
    return SpanMessage(
        trace_id=trace_id,
        span_id=new_span_id(),
        name=name,
        start=start,
        end=start + 10,
        service="svc",
        attrs=dict(attrs),
    )


def test_a_span_message_is_a_batch_or_a_single_span() -> None:
    a, b = span(new_trace_id(), "a"), span(new_trace_id(), "b")
    assert wire.decode_spans(wire.encode_spans([a, b])) == ([a, b], 0)
    assert wire.decode_spans(wire.encode_span(a)) == ([a], 0)  # what older publishers send
    good = msgspec.msgpack.encode(a)
    bad = msgspec.msgpack.encode({"trace_id": 7})
    mixed = b"\x93" + good + bad + good  # an array of three: one malformed
    assert wire.decode_spans(mixed) == ([a, a], 1)
    assert wire.decode_spans(bad) == ([], 1)
    for junk in (b"", b"\xc1", msgspec.msgpack.encode("text"), b"\x92\x01"):
        with pytest.raises(msgspec.DecodeError):
            wire.decode_spans(junk)


async def test_one_flush_sends_one_message_per_shard(settings: Settings) -> None:
    nc = await connect_nats(settings, "test")
    try:
        await ensure_stream(nc.jetstream(), settings)
        received: list[tuple[str, list[SpanMessage]]] = []

        async def got(msg: object) -> None:
            received.append((msg.subject, wire.decode_spans(msg.data)[0]))  # type: ignore[attr-defined]

        await nc.subscribe(subjects.spans_wildcard(settings.prefix), cb=got)
        processor = NatsSpanProcessor("svc", "i1", settings.prefix)
        await processor.start(nc)
        spans = [span(new_trace_id()) for _ in range(300)]
        for s in spans:
            processor.enqueue(s)
        await processor.flush()
        await processor.wait_until(lambda p: p.acked == 300, 5)
        await nc.flush()
        shards = {s.trace_id[0] for s in spans}
        assert len(received) == len(shards)  # 300 spans, at most 16 messages
        for subject, batch in received:
            assert {subjects.spans_subject(s.trace_id, settings.prefix) for s in batch} == {subject}
        assert sorted(s.span_id for _, b in received for s in b) == sorted(s.span_id for s in spans)
        await processor.stop()
    finally:
        await nc.close()


async def test_a_large_flush_is_split_below_the_message_limit(settings: Settings) -> None:
    nc = await connect_nats(settings, "test")
    try:
        await ensure_stream(nc.jetstream(), settings)
        sizes: list[int] = []

        async def got(msg: object) -> None:
            sizes.append(len(msg.data))  # type: ignore[attr-defined]

        trace_id = new_trace_id()
        await nc.subscribe(subjects.spans_subject(trace_id, settings.prefix), cb=got)
        processor = NatsSpanProcessor("svc", "i1", settings.prefix)
        await processor.start(nc)
        for _ in range(100):  # 100 spans of 10 KB: about 1 MB in one shard
            processor.enqueue(span(trace_id, stack="x" * 10_000))
        await processor.flush()
        await processor.wait_until(lambda p: p.acked == 100, 5)
        await nc.flush()
        assert len(sizes) >= 4 and max(sizes) <= export.MAX_MESSAGE_BYTES
        found = await read_trace(nc, settings, trace_id)
        assert len(found) == 100
        await processor.stop()
    finally:
        await nc.close()


async def test_a_trace_is_found_among_many_newer_batches(settings: Settings) -> None:
    nc = await connect_nats(settings, "test")
    js = nc.jetstream()
    try:
        await ensure_stream(js, settings)
        old = new_trace_id()
        # the old trace: a span on the pre-batch subject, and two in a batch
        legacy = span(old, "legacy", start=5_000)
        await js.publish(
            subjects.trace_spans_subject(old, settings.prefix), wire.encode_span(legacy)
        )
        batched = [span(old, "root", start=4_000), span(old, "child", start=4_500)]
        await js.publish(subjects.spans_subject(old, settings.prefix), wire.encode_spans(batched))
        # then more than two windows of newer batches in the same shard, other traces
        same_shard = old[0] + "1" * 31
        for i in range(FIRST_WINDOW * 2):
            await nc.publish(
                subjects.spans_subject(same_shard, settings.prefix),
                wire.encode_spans([span(same_shard, f"n{i}", start=10_000 + i)]),
            )
        junk = b"not a span but names " + old.encode()
        await js.publish(subjects.spans_subject(same_shard, settings.prefix), junk)
        names = sorted(s.name for s in await read_trace(nc, settings, old))
        assert names == ["child", "legacy", "root"]
        assert await read_trace(nc, settings, "f" * 32) == []
    finally:
        await nc.close()


async def test_the_metrics_feed_reads_batches_and_skips_bad_spans(settings: Settings) -> None:
    from natsmesh.tracing.metrics_feed import SpanFeed

    nc = await connect_nats(settings, "test")
    js = nc.jetstream()
    try:
        await ensure_stream(js, settings)
        trace_id = new_trace_id()
        subject = subjects.spans_subject(trace_id, settings.prefix)
        before = SpanFeed(nc, settings, [], history=3600)
        await before.start()  # what the stream held already (other tests' spans)
        await before.wait_until(lambda f: f.caught_up.is_set(), 5)
        await before.stop()
        good = [span(trace_id, f"s{i}") for i in range(3)]
        await js.publish(subject, wire.encode_spans(good))
        bad = msgspec.msgpack.encode({"trace_id": 7})
        await js.publish(subject, b"\x93" + msgspec.msgpack.encode(good[0]) + bad + bad)
        await js.publish(subject, b"\xc1 junk")
        got: list[SpanMessage] = []
        feed = SpanFeed(nc, settings, [got.append], history=3600)
        await feed.start()
        await feed.wait_until(lambda f: f.caught_up.is_set(), 5)
        await feed.stop()
        mine = [s.name for s in got if s.trace_id == trace_id]
        assert mine == ["s0", "s1", "s2", "s0"]
        assert feed.malformed - before.malformed == 3  # two spans of a batch, one message
    finally:
        await nc.close()


async def test_a_span_that_cannot_be_encoded_costs_only_itself(settings: Settings) -> None:
    nc = await connect_nats(settings, "test")
    try:
        await ensure_stream(nc.jetstream(), settings)
        trace_id = new_trace_id()
        processor = NatsSpanProcessor("svc", "i1", settings.prefix)
        await processor.start(nc)
        for i in range(10):
            processor.enqueue(span(trace_id, f"good{i}"))
        processor.enqueue(span(trace_id, "bad", big=2**70))  # no msgpack integer holds it
        await processor.flush()
        await processor.wait_until(lambda p: p.acked == 10, 5)
        assert processor.dropped == 1 and processor.published == 10
        names = sorted(s.name for s in await read_trace(nc, settings, trace_id))
        assert names == sorted(f"good{i}" for i in range(10))
        await processor.stop()
    finally:
        await nc.close()


async def test_a_flush_whose_ack_message_fails_leaves_nothing_awaited(settings: Settings) -> None:
    nc = await connect_nats(settings, "test")
    try:
        await ensure_stream(nc.jetstream(), settings)
        processor = NatsSpanProcessor("svc", "i1", settings.prefix)
        await processor.start(nc)
        small, huge = new_trace_id(), "0" + new_trace_id()[1:]
        small = "1" + small[1:]  # two shards: the huge span's message goes out last
        processor.enqueue(span(small, "small"))
        processor.enqueue(span(huge, "huge", blob="x" * (nc.max_payload + 10)))
        await processor.flush()
        assert processor.dropped == 1 and processor.published == 1
        assert processor._unacked == 0, "no ack can come: nothing may wait for one"
        await processor.stop()
        processor.enqueue(span(small, "late"))  # after stop: counted, not silently lost
        assert processor.dropped == 2
    finally:
        await nc.close()


async def test_without_its_root_a_trace_is_read_to_the_start_of_its_shard(
    settings: Settings,
) -> None:
    import time

    nc = await connect_nats(settings, "test")
    js = nc.jetstream()
    try:
        await ensure_stream(js, settings)
        trace_id, root = new_trace_id(), new_span_id()
        now = time.time_ns()
        a = msgspec.structs.replace(span(trace_id, "a", start=now), parent_id=root)
        await js.publish(subjects.spans_subject(trace_id, settings.prefix), wire.encode_spans([a]))
        other = trace_id[0] + "2" * 31
        for i in range(FIRST_WINDOW + 10):
            await nc.publish(
                subjects.spans_subject(other, settings.prefix),
                wire.encode_spans([span(other, f"n{i}", start=now)]),
            )
        # b started a minute "later" (clocks differ, or the trace ran long); the root still runs
        b = msgspec.structs.replace(span(trace_id, "b", start=now + 60_000_000_000), parent_id=root)
        await js.publish(subjects.spans_subject(trace_id, settings.prefix), wire.encode_spans([b]))
        names = sorted(s.name for s in await read_trace(nc, settings, trace_id))
        assert names == ["a", "b"]
    finally:
        await nc.close()
