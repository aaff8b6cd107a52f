"""Serving one request: decode, check, validate, inject, run or stream, encode."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from natsmesh import headers as H
from natsmesh import wire
from natsmesh.call_context import CallContext
from natsmesh.errors import (
    InvalidArguments,
    MeshError,
    PayloadTooLarge,
    TagMismatch,
    ToolError,
    ToolTimeout,
)
from natsmesh.final import Final
from natsmesh.injection import MeshTool
from natsmesh.selection import tags_match
from natsmesh.specs import ToolSpec, llm_spec, parse_tags
from natsmesh.tracing import payloads

if TYPE_CHECKING:
    from natsmesh.client import MeshClient
    from natsmesh.responder import Responder
    from natsmesh.tracing.spans import MeshSpan, Tracing

log = logging.getLogger("natsmesh.dispatch")

#: a ``Mesh-Deadline`` further away than this is refused as malformed
MAX_DEADLINE_AHEAD = 24 * 3600.0


class Outcome:
    """The reply to send: its body, for errors the error, and the call's SERVER span, which
    :meth:`Dispatcher.finish` ends once the reply has left."""

    __slots__ = ("body", "error", "span")

    def __init__(self, body: bytes, error: MeshError | None = None) -> None:
        self.body = body
        self.error = error
        self.span: MeshSpan | None = None

    @property
    def error_type(self) -> str | None:
        return self.error.type if self.error is not None else None


def error_outcome(error: MeshError) -> Outcome:
    return Outcome(wire.encode_error(error.to_wire()), error)


def collect(chunks: list[Any]) -> Any:
    """A stream's collected result: its text chunks joined when it has any (other chunks
    are progress events), otherwise the list of its chunks."""
    texts = [c for c in chunks if isinstance(c, str)]
    return "".join(texts) if texts else chunks


class Dispatcher:
    """Runs one tool's requests. Built once per tool at start; :meth:`serve` per request."""

    def __init__(
        self,
        spec: ToolSpec,
        client: MeshClient,
        agent: str,
        tracing: Tracing | None,
        max_payload: int,
        debug: bool = False,
        payload_limit: int | None = None,
    ) -> None:
        self.spec = spec
        #: characters of payload recorded on spans; ``None``: payloads are not recorded
        self.payload_limit = payload_limit
        self.client = client
        self.agent = agent
        self.tracing = tracing
        self.max_payload = max_payload
        self.debug = debug
        self._tags = frozenset(spec.tags)
        self._llm = llm_spec(spec.func)
        self._attrs = {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "mesh.agent": agent,
            "mesh.capability": spec.capability,
            "mesh.tool": spec.name,
        }

    async def serve(
        self, data: bytes, headers: Mapping[str, str] | None, responder: Responder
    ) -> Outcome:
        """Answer one request; never raises, except ``CancelledError`` when cancelled.

        With tracing, the outcome carries the call's SERVER span, still open: the caller
        sends the reply first, then hands the outcome to :meth:`finish`.
        """
        hdrs = headers or {}
        tracing = self.tracing
        if tracing is None:
            return await self._serve(data, hdrs, None, responder)
        span = tracing.server_span(self.spec.name, hdrs, self._attrs)
        span.attrs["messaging.message.body.size"] = len(data)
        if self.payload_limit is not None:
            span.attrs["mesh.request.payload"] = payloads.render(data, self.payload_limit)
        try:
            outcome = await self._serve(data, hdrs, span, responder)
        except BaseException as exc:  # a cancellation: the span says so and ends now
            span.end_with(exc)
            raise
        outcome.span = span
        return outcome

    def finish(self, outcome: Outcome, end: int) -> None:
        """Record the reply on the outcome's SERVER span (its body size, its error) and end
        the span at ``end`` (Unix ns, when the reply left)."""
        span = outcome.span
        if span is None:
            return
        outcome.span = None
        body = outcome.body
        error = outcome.error
        if error is not None:
            span.fail(error.type, error.message)
        span.attrs["mesh.reply.body.size"] = len(body)
        if self.payload_limit is not None:
            span.attrs["mesh.reply.payload"] = payloads.render(body, self.payload_limit)
        span.end(end)

    async def _serve(
        self, data: bytes, hdrs: Mapping[str, str], span: MeshSpan | None, responder: Responder
    ) -> Outcome:
        try:
            deadline = _deadline(hdrs.get(H.DEADLINE), self.client.settings.timeout)
            remaining = deadline - time.time()
            if self.spec.timeout is not None and self.spec.timeout < remaining:
                remaining = self.spec.timeout
                deadline = time.time() + remaining
            if remaining <= 0:
                raise ToolTimeout("the call's deadline had passed when it arrived")
            self._check_tags(hdrs.get(H.TAGS))
            arguments = self.spec.signature.validate(data)
            otel_context = (
                None if span is None or self.tracing is None else self.tracing.context_of(span)
            )
            self._inject(arguments, CallContext(deadline=deadline, otel_context=otel_context))
            responder.begin(self.spec.signature.is_stream, remaining)
            try:
                if otel_context is None or self.tracing is None:
                    result = await self._run(arguments, responder, span)
                else:
                    token = self.tracing.attach(otel_context)
                    try:
                        result = await self._run(arguments, responder, span)
                    finally:
                        self.tracing.detach(token)
            except asyncio.CancelledError:
                if not responder.timed_out:  # the caller cancelled, or went away
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                raise ToolTimeout(
                    f"{self.spec.name} did not finish before the caller's deadline; it was cancelled"
                ) from None
            body = wire.encode_result(result)
            if len(body) > self.max_payload:
                raise PayloadTooLarge(
                    f"{self.spec.name} returned {len(body)} bytes; the server accepts at most "
                    f"{self.max_payload}",
                    {"size": len(body), "max_payload": self.max_payload},
                )
            return Outcome(body)
        except MeshError as exc:
            return error_outcome(exc)
        except Exception as exc:
            return self._tool_failed(exc, span)

    def _tool_failed(self, exc: Exception, span: MeshSpan | None) -> Outcome:
        details: dict[str, Any] = {"exception": type(exc).__name__}
        if self.debug:
            details["traceback"] = traceback.format_exc()
        log.warning("%s raised %s: %s", self.spec.name, type(exc).__name__, exc, exc_info=exc)
        if span is not None:
            span.record_exception(exc)
        return error_outcome(ToolError(f"{type(exc).__name__}: {exc}", details))

    def _check_tags(self, selector: str | None) -> None:
        if not selector:
            return
        try:
            wanted = parse_tags(selector)
        except ValueError as exc:
            raise InvalidArguments(f"Mesh-Tags header {selector[:100]!r}: {exc}") from None
        if not tags_match(self._tags, wanted):
            raise TagMismatch(
                f"{self.agent} has tags {sorted(self._tags)}, which do not match {selector!r}"
            )

    def _inject(self, arguments: dict[str, Any], context: CallContext) -> None:
        sig = self.spec.signature
        client = self.client
        for param, dep in zip(sig.dependency_params, self.spec.dependencies, strict=True):
            arguments[param] = MeshTool(client, dep, context) if client.view.select(dep) else None
        if sig.context_param is not None and sig.context_type is not None:
            arguments[sig.context_param] = sig.context_type.model_validate(
                {k: v for k, v in arguments.items() if k not in sig.dependency_params}
            )
        if sig.llm_param is not None:
            from natsmesh.genai.agent import LlmAgent

            llm = self._llm
            if llm is None:
                raise ToolError(f"{self.spec.name} takes an LlmAgent but has no @mesh.llm(...)")
            ctx_value = arguments.get(sig.context_param) if sig.context_param else None
            arguments[sig.llm_param] = LlmAgent(
                client, llm, context, ctx_value, sig.return_type, self.spec.name
            )

    async def _run(
        self, arguments: dict[str, Any], responder: Responder, span: MeshSpan | None
    ) -> Any:
        func = self.spec.func
        sig = self.spec.signature
        if sig.is_stream:
            return await self._stream(func(**arguments), responder, span)
        if sig.is_async:
            return await func(**arguments)
        return await asyncio.to_thread(func, **arguments)

    async def _stream(self, generator: Any, responder: Responder, span: MeshSpan | None) -> Any:
        chunks: list[Any] = []
        try:
            async for value in generator:
                if isinstance(value, Final):
                    return value.value
                if span is not None:
                    span.chunk()
                await responder.chunk(value)
                chunks.append(value)
        finally:
            await generator.aclose()
        return collect(chunks)


def _deadline(value: str | None, default_timeout: float) -> float:
    """The absolute deadline (Unix seconds) from ``Mesh-Deadline`` (Unix milliseconds)."""
    now = time.time()
    if not value:
        return now + default_timeout
    try:
        deadline = int(value) / 1000
    except ValueError:
        raise InvalidArguments(
            f"Mesh-Deadline {value[:40]!r} is not a Unix time in milliseconds"
        ) from None
    if deadline - now > MAX_DEADLINE_AHEAD:
        raise InvalidArguments(
            f"Mesh-Deadline {value[:40]!r} is more than {MAX_DEADLINE_AHEAD / 3600:.0f} h away"
        )
    return deadline
