"""The worker's side of one call's conversation on its reply subject.

For a protocol-2 caller it sends ``accepted`` (at once for a streaming tool, otherwise
once the call has run ``ACCEPT_DELAY``), streams chunks with flow control, probes the
caller once the call has run ``PROBE_AFTER`` and cancels the work when the caller is
gone, and sends the final reply. A protocol-1 caller gets only the final reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from natsmesh import headers as H
from natsmesh import protocol, wire
from natsmesh.errors import PayloadTooLarge, ToolTimeout
from natsmesh.transport import Inbox, NoResponders, Transport


class Responder:
    """Sends what one call's caller hears; built per request by the runtime."""

    __slots__ = (
        "_credit",
        "_deadline_at",
        "_deadline_s",
        "_instance",
        "_max_payload",
        "_probe",
        "_task",
        "_timer",
        "_transport",
        "chunk_bytes",
        "chunks",
        "protocol2",
        "reply",
        "timed_out",
        "wants_chunks",
    )

    def __init__(
        self,
        transport: Transport,
        reply: str,
        instance: str,
        request_headers: Any,
        task: asyncio.Task[Any] | None,
        max_payload: int,
    ) -> None:
        self._transport = transport
        self.reply = reply
        self._instance = instance
        self._task = task
        self._max_payload = max_payload
        version = request_headers.get(H.PROTOCOL) if request_headers else None
        self.protocol2 = bool(reply) and version is not None and version != "1"
        self.wants_chunks = self.protocol2 and request_headers.get(H.STREAM) == "1"
        self._timer: asyncio.TimerHandle | None = None
        self._probe: asyncio.Task[None] | None = None
        self._credit: Inbox | None = None
        self._deadline_s = 0.0
        self._deadline_at = 0.0
        #: the call's deadline passed and its task was cancelled for it
        self.timed_out = False
        #: chunks sent so far, and their body bytes
        self.chunks = 0
        self.chunk_bytes = 0

    def begin(self, streaming: bool, remaining: float) -> None:
        """The call starts: accept it now (streams) or after the accept delay, and cancel
        it at its deadline (:attr:`timed_out` then says why). One timer serves both."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._deadline_s = remaining
        self._deadline_at = now + remaining
        when = self._deadline_at
        if self.protocol2:
            if streaming:
                self._accept()
            elif remaining > protocol.ACCEPT_DELAY:
                when = now + protocol.ACCEPT_DELAY
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        if self.protocol2 and self._probe is None and loop.time() < self._deadline_at:
            self._accept()
            self._timer = loop.call_at(self._deadline_at, self._fire)
            return
        self._timer = None
        self.timed_out = True
        if self._task is not None:
            self._task.cancel()

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        self._probe = loop.create_task(self._accept_and_probe())

    async def _accept_and_probe(self) -> None:
        transport, reply = self._transport, self.reply
        with contextlib.suppress(Exception):
            await transport.publish(reply, b"", {H.KIND: H.ACCEPTED, H.INSTANCE: self._instance})
        await asyncio.sleep(max(protocol.PROBE_AFTER - protocol.ACCEPT_DELAY, 0))
        while True:
            try:
                answer = await transport.request(
                    reply, b"", protocol.PROBE_INTERVAL, {H.KIND: H.PROBE}
                )
                gone = (answer.headers or {}).get(H.KIND) == H.GONE
            except NoResponders:
                gone = True
            except TimeoutError:
                gone = False  # a busy caller is not a dead one; the deadline bounds the call
            except Exception:
                gone = False
            if gone:
                if self._task is not None:
                    self._task.cancel()
                return
            await asyncio.sleep(protocol.PROBE_INTERVAL)

    async def chunk(self, value: Any) -> None:
        """Send one chunk (when the caller reads chunks); waits for credit every window.

        Raises ``CancelledError`` when the caller is gone, :class:`ToolTimeout` when it
        stopped reading until the deadline, :class:`PayloadTooLarge` for a huge chunk.
        """
        if not self.wants_chunks:
            return
        body = wire.encode_json(value)
        if len(body) > self._max_payload:
            raise PayloadTooLarge(
                f"a chunk of {len(body)} bytes is larger than the server's max payload "
                f"({self._max_payload})"
            )
        self.chunks += 1
        self.chunk_bytes += len(body)
        seq = self.chunks
        hdrs = {H.KIND: H.CHUNK, H.SEQ: str(seq)}
        transport = self._transport
        if seq % protocol.CREDIT_WINDOW:
            await transport.publish(self.reply, body, hdrs)
            return
        # this chunk asks for credit: its reply subject is our own inbox, answered in order
        if self._credit is None:
            self._credit = await transport.inbox()
        else:
            await self._wait_credit(self._credit)
        await transport.publish(self.reply, body, hdrs, reply=self._credit.subject)

    async def _wait_credit(self, inbox: Inbox) -> None:
        """Wait for the answer to the previous credit request."""
        try:
            answer = await inbox.get(max(self._deadline_s, 1.0))
        except TimeoutError:
            raise ToolTimeout("the caller stopped reading the stream until the deadline") from None
        hdrs = getattr(answer, "headers", None) or {}
        if hdrs.get(H.STATUS) == H.NO_RESPONDERS or hdrs.get(H.KIND) == H.GONE:
            raise asyncio.CancelledError  # the caller is gone

    def final_headers(self, base: dict[str, str]) -> dict[str, str]:
        """The final reply's headers: ``base`` plus the chunk count of a stream."""
        if self.chunks:
            return {**base, H.CHUNKS: str(self.chunks)}
        return base

    def stop(self) -> None:
        """The call is over: stop the accept timer, the probes and any credit wait."""
        if self._timer is not None:
            self._timer.cancel()
        if self._probe is not None:
            self._probe.cancel()
        if self._credit is not None:
            self._credit.close()
