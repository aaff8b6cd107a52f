"""Calling tools over the mesh: select a provider, send one NATS request, fail over, decode."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from natsmesh import headers as H
from natsmesh import subjects, wire
from natsmesh.config import Settings
from natsmesh.errors import (
    MeshError,
    NoProvider,
    PayloadTooLarge,
    TagMismatch,
    ToolTimeout,
    Unavailable,
    from_wire,
    translate_nats_error,
)
from natsmesh.registry import RegistryView
from natsmesh.selection import Candidate
from natsmesh.specs import DependencySpec, dependency, parse_tags

if TYPE_CHECKING:
    from natsmesh.tracing.spans import Tracing

#: seconds between liveness probes of the instance running a pinned call
PROBE_INTERVAL = 0.5
#: reply error types that mean "this provider did not start the call: try the next one"
_FAILOVER_TYPES = frozenset({Unavailable.type, TagMismatch.type})


@dataclasses.dataclass(frozen=True, slots=True)
class CallContext:
    """What a nested call inherits from the call it is made in."""

    #: absolute deadline, Unix seconds
    deadline: float | None = None
    #: OpenTelemetry context of the enclosing span (agents)
    otel_context: Any = None
    #: raw ``traceparent`` to forward when this process records no spans (the CLI)
    traceparent: str | None = None
    tracestate: str | None = None


class _Envelope(msgspec.Struct):
    result: Any = None
    error: Any = None


_envelope = msgspec.json.Decoder(_Envelope)


class MeshClient:
    """Calls mesh tools by capability (or tool name) from any process.

    Holds a NATS connection and a live registry view; :meth:`call` reads only memory
    to choose a provider and then makes one request, failing over on no-responders.
    """

    def __init__(
        self,
        nc: NATS,
        view: RegistryView,
        settings: Settings,
        caller: str = "cli",
        tracing: Tracing | None = None,
    ) -> None:
        self.nc = nc
        self.view = view
        self.settings = settings
        self.caller = caller
        self.tracing = tracing
        self._inflight: set[asyncio.Task[Any] | None] = set()
        self._lost: set[asyncio.Task[Any]] = set()

    def _subject(self, capability: str, candidate: Candidate) -> str:
        prefix = self.settings.prefix
        if candidate.instance_id:
            return subjects.inst_subject(candidate.instance_id, capability, prefix)
        return subjects.cap_subject(capability, candidate.agent, prefix)

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
        when nothing matches, ``ToolTimeout`` when the deadline passes.
        """
        dep = (
            target
            if isinstance(target, DependencySpec) and not (tags or version)
            else (self.dependency_for(target, tags, version))
        )
        now = time.time()
        deadline = now + (timeout if timeout is not None else self.settings.timeout)
        if context is not None and context.deadline is not None:
            deadline = min(deadline, context.deadline)
        body = arguments if isinstance(arguments, bytes) else wire.encode_json(arguments or {})
        if len(body) > self.nc.max_payload:
            raise PayloadTooLarge(
                f"the arguments are {len(body)} bytes; the server accepts at most {self.nc.max_payload}"
            )
        if not self.nc.is_connected:
            raise Unavailable(
                f"not connected to NATS ({'reconnecting' if self.nc.is_reconnecting else 'closed'}); "
                f"cannot call {dep.capability!r}"
            )
        candidates = self.view.select(dep)
        if not candidates:
            raise NoProvider(_no_provider_message(dep, self.view))
        tracing = self.tracing
        if tracing is None:
            return await self._try(dep, candidates, body, deadline, context, None)
        span = tracing.start_client(dep, context)
        try:
            result = await self._try(dep, candidates, body, deadline, context, span)
        except MeshError as exc:
            tracing.fail(span, exc.type, exc.message)
            span.end()
            raise
        except BaseException as exc:
            tracing.fail(span, type(exc).__name__, str(exc))
            span.end()
            raise
        span.end()
        return result

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
        loop, ``parts.result`` holds the final result. Leaving the block early cancels the
        call on the worker. A tool that does not stream yields no chunks, only the result.
        """
        return CallStream(
            self.call(
                target, arguments, tags=tags, version=version, timeout=timeout, context=context
            )
        )

    async def _try(
        self,
        dep: DependencySpec,
        candidates: list[Candidate],
        body: bytes,
        deadline: float,
        context: CallContext | None,
        span: Any,
    ) -> Any:
        hdrs = {
            H.CALLER: self.caller,
            H.DEADLINE: str(int(deadline * 1000)),
        }
        if dep.tags:
            hdrs[H.TAGS] = dep.header
        if span is not None:
            hdrs[H.TRACEPARENT] = span.traceparent
        elif context is not None and context.traceparent:
            hdrs[H.TRACEPARENT] = context.traceparent
            if context.tracestate:
                hdrs[H.TRACESTATE] = context.tracestate
        queue = list(self._expand(candidates))
        tried: set[str] = set()
        last: MeshError | None = None
        while queue:
            candidate = queue.pop(0)
            if candidate.instance_id in tried:
                continue
            remaining = deadline - time.time()
            if remaining <= 0:
                raise ToolTimeout(f"deadline passed before {dep.capability!r} could be called")
            subject = self._subject(dep.capability, candidate)
            hdrs[H.TOOL] = candidate.tool.name
            if span is not None:
                attrs = span.attrs
                attrs["messaging.destination.name"] = subject
                attrs["mesh.agent"] = candidate.agent
                attrs["mesh.tool"] = candidate.tool.name
            try:
                msg = await self._request(subject, body, remaining, hdrs, candidate)
            except nats.errors.NoRespondersError:
                last = Unavailable(f"{candidate.agent} has no live instance for {dep.capability!r}")
                continue
            except _InstanceLost:
                assert candidate.instance_id is not None
                tried.add(candidate.instance_id)
                last = Unavailable(
                    f"{candidate.instance_id} stopped while running {candidate.tool.name}",
                    {"instance": candidate.instance_id},
                )
                continue
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
            refused = msg.headers.get(H.INSTANCE) if msg.headers else None
            if refused:
                tried.add(refused)
            if candidate.instance_id is None and error.type == Unavailable.type:
                # an overloaded or stopping replica: offer the call to its siblings directly
                queue[:0] = self._instances(candidate, exclude=tried)
        assert last is not None
        raise last

    def _expand(self, candidates: list[Candidate]) -> list[Candidate]:
        """Idempotent tools are sent to one instance at a time, so that a call on an
        instance that dies can be retried on another (see :meth:`_request`)."""
        out: list[Candidate] = []
        for candidate in candidates:
            if candidate.tool.idempotent and candidate.instance_id is None:
                out.extend(self._instances(candidate, exclude=set()) or [candidate])
            else:
                out.append(candidate)
        return out

    def _instances(self, candidate: Candidate, exclude: set[str]) -> list[Candidate]:
        ids = [
            r.instance_id
            for r in self.view.records.values()
            if r.name == candidate.agent and r.instance_id not in exclude
        ]
        random.shuffle(ids)
        return [dataclasses.replace(candidate, instance_id=i) for i in ids]

    async def _request(
        self, subject: str, body: bytes, timeout: float, hdrs: dict[str, str], candidate: Candidate
    ) -> Msg:
        """One request; for a pinned instance, probe it while waiting and give up on it
        as soon as it is gone (its ``$SRV.PING`` subject has no responders). When the
        connection drops meanwhile, fail at once (see :meth:`connection_lost`)."""
        task = asyncio.current_task()
        inflight = self._inflight
        inflight.add(task)
        try:
            if candidate.instance_id is None:
                return await self.nc.request(subject, body, timeout=timeout, headers=hdrs)
            return await self._watched(subject, body, timeout, hdrs, candidate)
        except (nats.errors.Error, OSError) as exc:
            what = f"{candidate.tool.name} ({candidate.agent})"
            error = translate_nats_error(
                exc, what, {"agent": candidate.agent, "tool": candidate.tool.name}
            )
            if error is None:
                raise
            raise error from None
        except asyncio.CancelledError:
            if task is None or task not in self._lost:
                raise
            self._lost.discard(task)
            task.uncancel()
            raise Unavailable(
                f"the NATS connection was lost while {candidate.tool.name} was running; "
                "its outcome is unknown"
            ) from None
        finally:
            inflight.discard(task)

    def connection_lost(self) -> None:
        """Fail every call waiting for a reply: the replies cannot come any more."""
        for task in list(self._inflight):
            if task is not None and not task.done():
                self._lost.add(task)
                task.cancel()

    async def _watched(
        self, subject: str, body: bytes, timeout: float, hdrs: dict[str, str], candidate: Candidate
    ) -> Msg:
        task = asyncio.ensure_future(self.nc.request(subject, body, timeout=timeout, headers=hdrs))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=PROBE_INTERVAL)
                if done:
                    return task.result()
                if not await self._alive(candidate):
                    raise _InstanceLost
        finally:
            if not task.done():
                task.cancel()

    async def _alive(self, candidate: Candidate) -> bool:
        assert candidate.instance_id is not None
        ping = subjects.service_subjects("PING", candidate.agent, candidate.instance_id)[2]
        try:
            await self.nc.request(ping, b"", timeout=PROBE_INTERVAL)
        except nats.errors.NoRespondersError:
            return False
        except Exception:
            return True  # busy or slow is not dead
        return True


class CallStream:
    """The chunks of one streamed call (async iterator, async context manager)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._done = False
        #: the final result, once the iteration has ended
        self.result: Any = None

    def __aiter__(self) -> CallStream:
        return self

    async def __anext__(self) -> Any:
        if not self._done:
            self._done = True
            self.result = await self._call
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading; a call still running is cancelled."""
        if not self._done:
            self._done = True
            self._call.close()

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _InstanceLost(Exception):
    """The pinned instance vanished while a call was in flight."""


def _no_provider_message(dep: DependencySpec, view: RegistryView) -> str:
    selector = f" with tags {list(dep.tags)}" if dep.tags else ""
    constraint = f" and version {dep.version}" if dep.version else ""
    if view.has(dep.capability):
        return f"no live provider of {dep.capability!r} matches{selector}{constraint}"
    return f"no live provider of {dep.capability!r}"
