"""Serving one request: decode, check, validate, inject, run, encode."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from natsmesh import headers as H
from natsmesh import wire
from natsmesh.client import CallContext, MeshClient
from natsmesh.errors import MeshError, PayloadTooLarge, TagMismatch, ToolError, ToolTimeout
from natsmesh.injection import MeshTool
from natsmesh.selection import tags_match
from natsmesh.specs import ToolSpec, llm_spec, parse_tags

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from natsmesh.tracing.spans import Tracing

log = logging.getLogger("natsmesh.dispatch")


class Outcome:
    """The reply to send: its body and, for errors, the error."""

    __slots__ = ("body", "error")

    def __init__(self, body: bytes, error: MeshError | None = None) -> None:
        self.body = body
        self.error = error

    @property
    def error_type(self) -> str | None:
        return self.error.type if self.error is not None else None


def error_outcome(error: MeshError) -> Outcome:
    return Outcome(wire.encode_error(error.to_wire()), error)


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
    ) -> None:
        self.spec = spec
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

    async def serve(self, data: bytes, headers: Mapping[str, str] | None) -> Outcome:
        """Answer one request; never raises (except cancellation)."""
        hdrs = headers or {}
        tracing = self.tracing
        if tracing is None:
            return await self._serve(data, hdrs, None)
        span = tracing.start_server(self.spec.name, hdrs, self._attrs)
        try:
            outcome = await self._serve(data, hdrs, tracing.context_of(span))
        except asyncio.CancelledError:
            tracing.fail(span, "cancelled", "the call was cancelled")
            span.end()
            raise
        if outcome.error is not None:
            tracing.fail(span, outcome.error.type, outcome.error.message)
        span.end()
        return outcome

    async def _serve(
        self, data: bytes, hdrs: Mapping[str, str], otel_context: Context | None
    ) -> Outcome:
        """``otel_context`` holds the SERVER span; it is current while the tool runs."""
        try:
            deadline = _deadline(hdrs.get(H.DEADLINE), self.client.settings.timeout)
            remaining = deadline - time.time()
            if remaining <= 0:
                raise ToolTimeout("the call's deadline had passed when it arrived")
            selector = hdrs.get(H.TAGS)
            if selector and not tags_match(self._tags, parse_tags(selector)):
                raise TagMismatch(
                    f"{self.agent} has tags {sorted(self._tags)}, which do not match {selector!r}"
                )
            arguments = self.spec.signature.validate(data)
            context = CallContext(deadline=deadline, otel_context=otel_context)
            self._inject(arguments, context)
            tracing = self.tracing
            try:
                async with asyncio.timeout(remaining):
                    if tracing is None or otel_context is None:
                        result = await self._run(arguments)
                    else:
                        token = tracing.attach(otel_context)
                        try:
                            result = await self._run(arguments)
                        finally:
                            tracing.detach(token)
            except TimeoutError:
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
            details: dict[str, Any] = {"exception": type(exc).__name__}
            if self.debug:
                details["traceback"] = traceback.format_exc()
            log.info("%s raised %s: %s", self.spec.name, type(exc).__name__, exc)
            return error_outcome(ToolError(f"{type(exc).__name__}: {exc}", details))

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

    async def _run(self, arguments: dict[str, Any]) -> Any:
        func = self.spec.func
        if self.spec.signature.is_async:
            return await func(**arguments)
        return await asyncio.to_thread(func, **arguments)


def _deadline(value: str | None, default_timeout: float) -> float:
    if value:
        try:
            return int(value) / 1000
        except ValueError:
            pass
    return time.time() + default_timeout
