"""Calling tools over the mesh: select a provider, converse with it, fail over, decode.

Every call goes to the chosen provider's queue subject (``mesh.cap.<capability>.<agent>``)
and NATS picks the instance; instance subjects are only for pins (a constraint only some
instances meet, or a resend that must avoid a frozen instance). What happens on the
reply subject is :mod:`natsmesh.conversation`'s; the liveness checks are
:mod:`natsmesh.watchdog`'s; the NATS seam is :mod:`natsmesh.transport`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from natsmesh import headers as H
from natsmesh import protocol, subjects, wire
from natsmesh.call_context import CallContext
from natsmesh.config import Settings
from natsmesh.conversation import Conversation, Lost
from natsmesh.dependency import DependencySpec, dependency, parse_tags
from natsmesh.errors import (
    MeshError,
    NoProvider,
    PayloadTooLarge,
    TagMismatch,
    ToolTimeout,
    Unavailable,
    from_wire,
)
from natsmesh.registry import RegistryView
from natsmesh.selection import Candidate
from natsmesh.streams import CallStream, ChunkQueue
from natsmesh.transport import Message, NatsTransport, NoResponders, Transport
from natsmesh.watchdog import Watchdog

if TYPE_CHECKING:
    from natsmesh.tracing.spans import MeshSpan, Tracing

__all__ = ["CallContext", "CallStream", "MeshClient"]

#: reply error types that mean "this provider did not start the call: try the next one"
_FAILOVER_TYPES = frozenset({Unavailable.type, TagMismatch.type})
_PROTOCOL = str(wire.PROTOCOL)


class _Envelope(msgspec.Struct):
    result: Any = None
    error: Any = None


_envelope = msgspec.json.Decoder(_Envelope)


class MeshClient:
    """Calls mesh tools by capability (or tool name) from any process.

    Holds a transport (a NATS connection) and a live registry view; :meth:`call` reads
    only memory to choose a provider, then converses with it and fails over.
    """

    def __init__(
        self,
        nc: Any,
        view: RegistryView,
        settings: Settings,
        caller: str = "cli",
        tracing: Tracing | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.nc = nc
        self.view = view
        self.settings = settings
        self.caller = caller
        self.tracing = tracing
        self.transport: Transport = transport or NatsTransport(nc)
        self.watchdog = Watchdog(self.transport, self._instances_of)
        self._inflight: set[asyncio.Task[Any] | None] = set()
        self._lost: set[asyncio.Task[Any]] = set()

    def _instances_of(self, agent: str) -> list[str]:
        return [r.instance_id for r in self.view.records.values() if r.name == agent]

    def dependency_for(
        self,
        target: str | Mapping[str, Any] | DependencySpec,
        tags: Any = None,
        version: str | None = None,
    ) -> DependencySpec:
        """A dependency spec for a tool name, a capability or a spec, plus extra selectors."""
        if isinstance(target, str):
            capability = self.view.resolve(target) if target else target
            dep = DependencySpec(subjects.check_token(capability, "capability"))
        else:
            dep = dependency(target)
        if tags or version:
            if version is not None:
                from natsmesh.versions import parse_constraint

                parse_constraint(version)
            dep = dataclasses.replace(
                dep, tags=dep.tags + parse_tags(tags or ()), version=version or dep.version
            )
        return dep

    async def call(
        self,
        target: str | Mapping[str, Any] | DependencySpec,
        arguments: Mapping[str, Any] | bytes | None = None,
        *,
        tags: Any = None,
        version: str | None = None,
        timeout: float | None = None,
        context: CallContext | None = None,
    ) -> Any:
        """Call the best live provider of ``target`` and return its result.

        ``target`` is a capability, a tool name, or a dependency spec. Raises a
        :class:`~natsmesh.MeshError` subclass: the remote error rebuilt, ``NoProvider``
        when nothing matches, ``ToolTimeout`` when the deadline passes. Cancelling the
        awaiting task cancels the call on the worker. A streaming tool's chunks are
        collected into its result (see :meth:`stream`).
        """
        return await self._call(target, arguments, tags, version, timeout, context, None)

    def stream(
        self,
        target: str | Mapping[str, Any] | DependencySpec,
        arguments: Mapping[str, Any] | bytes | None = None,
        *,
        tags: Any = None,
        version: str | None = None,
        timeout: float | None = None,
        context: CallContext | None = None,
    ) -> CallStream:
        """Call ``target`` and iterate over the chunks it streams.

        ``async with client.stream(...) as parts: async for part in parts: ...``; after the
        loop, ``parts.result`` holds the final (collected) result. Leaving the block early
        cancels the call on the worker. A tool that does not stream yields no chunks.
        """

        def run(sink: ChunkQueue) -> Awaitable[Any]:
            return self._call(target, arguments, tags, version, timeout, context, sink)

        return CallStream(run, self.transport)

    async def _call(
        self,
        target: str | Mapping[str, Any] | DependencySpec,
        arguments: Mapping[str, Any] | bytes | None,
        tags: Any,
        version: str | None,
        timeout: float | None,
        context: CallContext | None,
        sink: ChunkQueue | None,
    ) -> Any:
        dep = (
            target
            if isinstance(target, DependencySpec) and not (tags or version)
            else self.dependency_for(target, tags, version)
        )
        deadline = time.time() + (timeout if timeout is not None else self.settings.timeout)
        if context is not None and context.deadline is not None:
            deadline = min(deadline, context.deadline)
        body = arguments if isinstance(arguments, bytes) else wire.encode_json(arguments or {})
        transport = self.transport
        if len(body) > transport.max_payload:
            raise PayloadTooLarge(
                f"the arguments are {len(body)} bytes; the server accepts at most "
                f"{transport.max_payload}"
            )
        state = transport.state
        if state != "connected":
            raise Unavailable(f"not connected to NATS ({state}); cannot call {dep.capability!r}")
        candidates = self.view.select(dep)
        if not candidates:
            raise NoProvider(_no_provider_message(dep, self.view))
        tracing = self.tracing
        if tracing is None:
            return await self._attempts(dep, candidates, body, deadline, context, None, sink)
        with tracing.client_scope(dep, context, len(body)) as span:
            return await self._attempts(dep, candidates, body, deadline, context, span, sink)

    def _headers(
        self,
        dep: DependencySpec,
        deadline: float,
        context: CallContext | None,
        span: Any,
        sink: Any,
    ) -> dict[str, str]:
        hdrs = {
            H.CALLER: self.caller,
            H.DEADLINE: str(int(deadline * 1000)),
            H.PROTOCOL: _PROTOCOL,
        }
        if sink is not None:
            hdrs[H.STREAM] = "1"
        if dep.tags:
            hdrs[H.TAGS] = dep.header
        if span is not None:
            hdrs[H.TRACEPARENT] = span.traceparent
            if span.tracestate:
                hdrs[H.TRACESTATE] = span.tracestate
        elif context is not None and context.traceparent:
            hdrs[H.TRACEPARENT] = context.traceparent
            if context.tracestate:
                hdrs[H.TRACESTATE] = context.tracestate
        return hdrs

    async def _attempts(
        self,
        dep: DependencySpec,
        candidates: list[Candidate],
        body: bytes,
        deadline: float,
        context: CallContext | None,
        span: MeshSpan | None,
        sink: ChunkQueue | None,
    ) -> Any:
        hdrs = self._headers(dep, deadline, context, span, sink)
        queue = list(candidates)
        refused: set[str] = set()
        resends = 0
        last: MeshError | None = None
        while queue:
            candidate = queue.pop(0)
            if candidate.instance_id in refused:
                continue
            if self.watchdog.frozen and candidate.instance_id is None:
                candidate = self._around_frozen(candidate)
            subject = self._subject(dep.capability, candidate)
            hdrs[H.TOOL] = candidate.tool.name
            if span is not None:
                span.target(subject, candidate.agent, candidate.tool.name)
            try:
                msg = await self._attempt(subject, body, hdrs, deadline, candidate, sink)
            except NoResponders:
                last = Unavailable(f"{candidate.agent} has no live instance for {dep.capability!r}")
                continue
            except Lost as lost:
                resends += 1
                streamed = sink is not None and sink.received > 0
                if not candidate.tool.idempotent or streamed or resends > protocol.MAX_RESENDS:
                    raise _outcome_unknown(lost, candidate) from None
                queue.insert(0, _resend_target(candidate, lost))
                continue
            if span is not None:
                span.reply(len(msg.data), *((sink.received, sink.first_at) if sink else ()))
            try:
                envelope = _envelope.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise MeshError(f"malformed reply from {candidate.agent}") from None
            if envelope.error is None:
                return envelope.result
            error = from_wire(envelope.error)
            if error.type not in _FAILOVER_TYPES:
                raise error
            last = error
            instance = msg.headers.get(H.INSTANCE) if msg.headers else None
            if instance:
                refused.add(instance)
            if candidate.instance_id is None and error.type == Unavailable.type:
                # an overloaded or stopping replica: offer the call to its siblings directly
                queue[:0] = self._siblings(candidate, exclude=refused)
        assert last is not None
        raise last

    def _subject(self, capability: str, candidate: Candidate) -> str:
        prefix = self.settings.prefix
        if candidate.instance_id:
            return subjects.inst_subject(candidate.instance_id, capability, prefix)
        return subjects.cap_subject(capability, candidate.agent, prefix)

    def _around_frozen(self, candidate: Candidate) -> Candidate:
        """While an instance of the agent is frozen NATS still delivers to it: pin the call
        to one that is not (the watchdog keeps pinging the frozen one)."""
        frozen = self.watchdog.avoid(candidate.agent)
        if not frozen:
            return candidate
        others = [i for i in self._instances_of(candidate.agent) if i not in frozen]
        if not others:
            return candidate
        return dataclasses.replace(candidate, instance_id=random.choice(others))

    def _siblings(self, candidate: Candidate, exclude: set[str]) -> list[Candidate]:
        ids = [i for i in self._instances_of(candidate.agent) if i not in exclude]
        random.shuffle(ids)
        return [dataclasses.replace(candidate, instance_id=i) for i in ids]

    async def _attempt(
        self,
        subject: str,
        body: bytes,
        hdrs: dict[str, str],
        deadline: float,
        candidate: Candidate,
        sink: ChunkQueue | None,
    ) -> Message:
        """One conversation; when the connection drops meanwhile, fail at once."""
        task = asyncio.current_task()
        inflight = self._inflight
        inflight.add(task)
        transport = self.transport
        try:
            conversation = Conversation(
                await transport.inbox(),
                candidate.agent,
                candidate.instance_id,
                self.settings.prefix,
            )
            watchdog = self.watchdog if candidate.protocol >= 2 else None
            on_chunk: Callable[[Message], None] | None = sink.put if sink is not None else None
            return await conversation.run(
                transport, watchdog, subject, body, hdrs, deadline, on_chunk
            )
        except ToolTimeout:
            raise ToolTimeout(
                f"{candidate.tool.name} ({candidate.agent}) did not answer within the deadline",
                {"agent": candidate.agent, "tool": candidate.tool.name},
            ) from None
        except asyncio.CancelledError:
            if task is None or task not in self._lost:
                raise
            self._lost.discard(task)
            task.uncancel()
            raise Unavailable(
                f"the NATS connection was lost while {candidate.tool.name} was running; "
                "its outcome is unknown",
                {"outcome": "unknown"},
            ) from None
        finally:
            inflight.discard(task)

    def connection_lost(self) -> None:
        """Fail every call waiting for a reply: the replies cannot come any more."""
        for task in list(self._inflight):
            if task is not None and not task.done():
                self._lost.add(task)
                task.cancel()


def _outcome_unknown(lost: Lost, candidate: Candidate) -> Unavailable:
    what = lost.instance or f"an instance of {candidate.agent}"
    how = {
        "gone": "stopped",
        "frozen": "stopped answering",
        "unanswered": f"did not acknowledge the call within {protocol.UNANSWERED_LIMIT:g} s",
    }.get(lost.reason, lost.reason)
    when = "running" if lost.details.get("accepted") else "holding"
    return Unavailable(
        f"{what} {how} while {when} {candidate.tool.name}; its outcome is unknown",
        {
            "outcome": "unknown",
            "instance": lost.instance,
            "agent": candidate.agent,
            "reason": lost.reason,
        },
    )


def _resend_target(candidate: Candidate, lost: Lost) -> Candidate:
    """Where to send an idempotent call again: the queue group, unless an instance is
    frozen (NATS would still deliver to it), then one instance that answered its ping."""
    if lost.reason == "gone":  # its subscriptions went with it: the queue group is safe
        return dataclasses.replace(candidate, instance_id=None)
    alive = [i for i in lost.alive if i not in (lost.details.get("suspects") or ())]
    if not alive:
        return dataclasses.replace(candidate, instance_id=None)
    return dataclasses.replace(candidate, instance_id=random.choice(alive))


def _no_provider_message(dep: DependencySpec, view: RegistryView) -> str:
    selector = f" with tags {list(dep.tags)}" if dep.tags else ""
    constraint = f" and version {dep.version}" if dep.version else ""
    if view.has(dep.capability):
        return f"no live provider of {dep.capability!r} matches{selector}{constraint}"
    return f"no live provider of {dep.capability!r}"
