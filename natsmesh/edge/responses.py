"""ASGI responses that end in one mesh call (JSON, or Server-Sent Events for a stream).

Each runs its call in a task and watches the connection meanwhile: when the client goes
away, the task is cancelled, and with it the call on the worker (the call protocol's
cancellation).

The event stream of a call (``Accept: text/event-stream``)::

    event: chunk           one per value the tool yields, in order
    data: <JSON value>

    event: result          last: the call's final result ...
    data: <JSON value>

    event: error           ... or, instead, the mesh error that ended it
    data: {"type": ..., "message": ..., "details": {...}}

An error before the first event (no provider, invalid arguments) is not streamed: it is
an ordinary JSON error response with its HTTP status. Silence is broken by comment lines
(``: keep-alive``) that SSE clients ignore.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from natsmesh import wire
from natsmesh.edge.http_errors import mesh_error_body, status_of
from natsmesh.errors import MeshError

#: called once when the response is over: the HTTP status sent (499 when the client left
#: first) and the mesh error, if the call failed
Finish = Callable[[int, MeshError | None], None]
#: status recorded for a client that went away before the response ended (nginx's code)
CLIENT_GONE = 499
#: seconds of silence before an event stream sends a keep-alive comment
KEEPALIVE = 15.0

JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def event(name: str, data: Any) -> bytes:
    """One Server-Sent Event whose ``data`` is a JSON value (one line)."""
    return b"event: " + name.encode() + b"\ndata: " + wire.encode_json(data) + b"\n\n"


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone away (the request body was read before)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(receive: Receive, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work``; cancel it when the client disconnects first. True when it completed."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task
    if task.cancelled():
        return False
    if isinstance(task.exception(), OSError):  # the server could not write: the client left
        return False
    task.result()  # re-raise anything else
    return True


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """A complete JSON response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _CallAnswer:
    """An ASGI response that runs a mesh call until the client disconnects, then reports
    its outcome (status, error) to ``finish`` (the gateway's span)."""

    def __init__(self, headers: list[tuple[bytes, bytes]], finish: Finish) -> None:
        self._headers = headers
        self._finish = finish
        self._outcome: tuple[int, MeshError | None] = (CLIENT_GONE, None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await until_disconnect(receive, self._run(send))
        finally:
            self._finish(*self._outcome)

    async def _run(self, send: Send) -> None:
        raise NotImplementedError


class CallResponse(_CallAnswer):
    """``await call()`` → 200 with the result as JSON, or the mesh error with its status."""

    def __init__(
        self, call: Callable[[], Awaitable[Any]], headers: list[tuple[bytes, bytes]], finish: Finish
    ) -> None:
        super().__init__(headers, finish)
        self._call = call

    async def _run(self, send: Send) -> None:
        try:
            result = await self._call()
        except MeshError as exc:
            self._outcome = (status_of(exc), exc)
            await send_json(send, status_of(exc), mesh_error_body(exc), self._headers)
            return
        body = wire.encode_json(result)
        self._outcome = (200, None)
        await send_json(send, 200, body, self._headers)


class EventStreamResponse(_CallAnswer):
    """Streams a call as Server-Sent Events (see the module docstring for the format).

    ``open()`` returns the call's stream (``client.stream(...)``); it is entered, read and
    left in one task, so leaving early (a disconnect) cancels the call on the worker.
    After ``keepalive`` seconds without an event, a comment line (``: keep-alive``) keeps
    proxies from closing an idle stream; the first one starts the response, so a call
    that stays silent that long reports a later error as an ``error`` event.
    """

    def __init__(
        self,
        open: Callable[[], AbstractAsyncContextManager[Any]],
        headers: list[tuple[bytes, bytes]],
        finish: Finish,
        keepalive: float = KEEPALIVE,
    ) -> None:
        super().__init__(headers, finish)
        self._open = open
        self._keepalive = keepalive

    async def _run(self, send: Send) -> None:
        started = False
        lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        last = loop.time()

        async def write(body: bytes, more: bool = True) -> None:
            nonlocal started, last
            async with lock:
                if not started:
                    started = True
                    headers = [*_SSE_HEADERS, *self._headers]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": more})
                last = loop.time()

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(max(0.0, last + self._keepalive - loop.time()))
                if loop.time() - last >= self._keepalive:
                    await write(b": keep-alive\n\n")

        async def stop_keep_alive() -> bool:
            """No more keep-alives (never cut one mid-send); True when the response began."""
            async with lock:
                ticker.cancel()
                return started

        ticker = asyncio.ensure_future(keep_alive())
        try:
            try:
                async with self._open() as parts:
                    async for chunk in parts:
                        await write(event("chunk", chunk))
                    result = parts.result
            except MeshError as exc:
                if await stop_keep_alive():
                    self._outcome = (200, exc)
                    await write(event("error", exc.to_wire()), more=False)
                else:
                    self._outcome = (status_of(exc), exc)
                    await send_json(send, status_of(exc), mesh_error_body(exc), self._headers)
                return
            await stop_keep_alive()
            self._outcome = (200, None)
            await write(event("result", result), more=False)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
