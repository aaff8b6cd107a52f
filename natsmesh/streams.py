"""Reading a streamed call: the bounded chunk queue and the :class:`CallStream` iterator.

Flow control: a worker asks for credit every ``CREDIT_WINDOW`` chunks (that chunk comes
as a request) and waits for the previous credit before it asks again, so at most two
windows are unanswered. The queue answers at once while it holds at most one window,
otherwise when the reader has caught up: a reader that stops reading holds at most
three windows of chunks, and the worker's generator is paused (until the deadline).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from natsmesh import headers as H
from natsmesh import protocol
from natsmesh.errors import MeshError
from natsmesh.transport import Message, Transport

_END = object()
_ALIVE = {H.KIND: H.ALIVE}
_decode = msgspec.json.Decoder().decode


class ChunkQueue:
    """Chunks of one call, in order, between the conversation and the reader."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._items: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._credit: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: chunks received so far, and when the first came (Unix ns)
        self.received = 0
        self.first_at = 0
        self.error: BaseException | None = None

    def put(self, msg: Message) -> None:
        """Take one chunk message (called by the conversation, in arrival order)."""
        self.received += 1
        if self.received == 1:
            self.first_at = time.time_ns()
        seq = msg.headers.get(H.SEQ) if msg.headers else None
        if seq is not None and seq != str(self.received):
            self.error = MeshError(f"chunk {self.received} of the stream was lost (got {seq})")
        try:
            value = _decode(msg.data)
        except msgspec.DecodeError:
            value = msg.data.decode("utf-8", "replace")
        self._items.append(value)
        if msg.reply:
            self._credit.append(msg.reply)
            self._grant()
        self._wake()

    def finish(self) -> None:
        self._items.append(_END)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _grant(self) -> None:
        if self._credit and len(self._items) <= protocol.CREDIT_WINDOW:
            loop = asyncio.get_running_loop()
            for reply in self._credit:
                task = loop.create_task(self._answer(reply))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._credit.clear()

    async def _answer(self, reply: str) -> None:
        with contextlib.suppress(Exception):
            await self._transport.publish(reply, b"", _ALIVE)

    async def next(self) -> Any:
        """The next chunk, or the end marker."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        self._grant()
        return item


class CallStream:
    """The chunks of one streamed call (async iterator and async context manager).

    ``result`` holds the final result once the iteration has ended. Leaving the
    ``async with`` block (or calling :meth:`aclose`) before the end cancels the call.
    """

    def __init__(self, run: Callable[[ChunkQueue], Awaitable[Any]], transport: Transport) -> None:
        self._run = run
        self._queue = ChunkQueue(transport)
        self._task: asyncio.Future[Any] | None = None
        self._done = False
        #: the final result, once the iteration has ended
        self.result: Any = None

    def _start(self) -> asyncio.Future[Any]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run(self._queue))
            self._task.add_done_callback(lambda _: self._queue.finish())
        return self._task

    def __aiter__(self) -> CallStream:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        task = self._start()
        try:
            item = await self._queue.next()
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if item is not _END:
            return item
        self._done = True
        self.result = task.result()  # raises the call's error
        if self._queue.error is not None:
            raise self._queue.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading; a call still running is cancelled on its worker."""
        self._done = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MeshError):
                await task

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
