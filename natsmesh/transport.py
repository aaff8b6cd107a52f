"""The seam between calls and NATS: publish, single requests, per-call inboxes, error mapping.

A call's reply subject is an *inbox* of this process: one wildcard subscription per
connection (``<inbox prefix>.<mux id>.*``) receives every call's messages and hands
each to its call by the last token, as nats-py's own request mux does; unlike that
mux, an inbox takes any number of messages (accepted, chunks, probes, the final
reply). Probes are answered here at once: ``alive`` while the call is waited for,
``gone`` when nobody waits for it any more.

Everything below raises our errors: nats-py's exceptions become
:class:`~natsmesh.MeshError` subclasses by one table (:func:`~natsmesh.errors.translate_nats_error`,
applied by :func:`nats_errors`, ``raise ... from``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from natsmesh import headers as H
from natsmesh.errors import MeshError, translate_nats_error


class Message(Protocol):
    """What transports deliver (nats-py's ``Msg`` has this shape)."""

    subject: str
    reply: str
    data: bytes
    headers: dict[str, str] | None


class NoResponders(Exception):
    """Nobody subscribes to the subject: the request reached no one."""


class Signal:
    """Something the caller itself puts into a call's inbox (an instance lost, say)."""

    __slots__ = ("details", "reason")

    def __init__(self, reason: str, details: dict[str, Any] | None = None) -> None:
        self.reason = reason
        self.details = details or {}


class Inbox:
    """The reply subject of one call; :meth:`get` returns its messages in order."""

    __slots__ = ("_closer", "_items", "_waiter", "subject")

    def __init__(self, subject: str, closer: Any) -> None:
        self.subject = subject
        self._items: collections.deque[Message | Signal] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closer = closer

    def put(self, item: Message | Signal) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float) -> Message | Signal:
        """The next message; raises ``TimeoutError`` after ``timeout`` seconds."""
        if not self._items:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # a timer on the future (cheaper than asyncio.timeout, which cancels the task)
            expiry = loop.call_later(max(timeout, 0), _expire, waiter)
            try:
                await waiter
            finally:
                expiry.cancel()
                self._waiter = None
        return self._items.popleft()

    def close(self) -> None:
        """Stop receiving: later messages for this call are dropped (probes answered ``gone``)."""
        self._closer(self.subject)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Transport(Protocol):
    """What the mesh client needs from a connection."""

    @property
    def max_payload(self) -> int: ...

    @property
    def state(self) -> str:
        """``connected``, ``reconnecting`` or ``closed``."""
        ...

    async def publish(
        self, subject: str, body: bytes, headers: Mapping[str, str] | None = None, reply: str = ""
    ) -> None: ...

    async def request(
        self, subject: str, body: bytes, timeout: float, headers: Mapping[str, str] | None = None
    ) -> Message:
        """One request, one reply; raises :class:`NoResponders` or ``TimeoutError``."""
        ...

    async def inbox(self) -> Inbox: ...


@contextlib.contextmanager
def nats_errors(what: str, details: dict[str, Any] | None = None) -> Iterator[None]:
    """Turn nats-py's connection, payload and timeout errors into ours, naming ``what``."""
    try:
        yield
    except MeshError:
        raise
    except Exception as exc:
        error = translate_nats_error(exc, what, details)
        if error is None:
            raise
        raise error from exc


_ALIVE = {H.KIND: H.ALIVE}
_GONE = {H.KIND: H.GONE}


class NatsTransport:
    """A :class:`Transport` over one nats-py connection."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self._inboxes: dict[str, Inbox] = {}
        self._prefix = ""
        self._next = 0
        self._lock = asyncio.Lock()

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    @property
    def state(self) -> str:
        nc = self.nc
        if nc.is_connected:
            return "connected"
        return "reconnecting" if nc.is_reconnecting else "closed"

    async def publish(
        self, subject: str, body: bytes, headers: Mapping[str, str] | None = None, reply: str = ""
    ) -> None:
        with nats_errors(f"publishing to {subject}"):
            await self.nc.publish(subject, body, reply=reply, headers=headers)

    async def request(
        self, subject: str, body: bytes, timeout: float, headers: Mapping[str, str] | None = None
    ) -> Message:
        import nats.errors

        try:
            return await self.nc.request(subject, body, timeout=timeout, headers=headers)  # type: ignore[no-any-return]
        except nats.errors.NoRespondersError:
            raise NoResponders(subject) from None
        except nats.errors.TimeoutError:
            raise TimeoutError(subject) from None
        except Exception as exc:
            error = translate_nats_error(exc, f"request to {subject}")
            if error is None:
                raise
            raise error from exc

    async def inbox(self) -> Inbox:
        """A new inbox; the mux subscription is made on first use."""
        if not self._prefix:
            async with self._lock:
                if not self._prefix:
                    await self._subscribe()
        self._next += 1
        subject = f"{self._prefix}{self._next}"
        box = Inbox(subject, self._close)
        self._inboxes[subject] = box
        return box

    async def _subscribe(self) -> None:
        prefix = f"{self.nc.new_inbox()}."
        with nats_errors("subscribing to the reply inbox"):
            await self.nc.subscribe(
                f"{prefix}*",
                cb=self._on_message,
                pending_msgs_limit=1_000_000,
                pending_bytes_limit=256 * 1024 * 1024,
            )
        self._prefix = prefix

    def _close(self, subject: str) -> None:
        self._inboxes.pop(subject, None)

    async def _on_message(self, msg: Any) -> None:
        box = self._inboxes.get(msg.subject)
        hdrs = msg.headers
        if msg.reply and hdrs and hdrs.get(H.KIND) == H.PROBE:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, b"", headers=_ALIVE if box else _GONE)
            return
        if box is not None:
            box.put(msg)
        elif msg.reply:  # a chunk asking for credit on a call nobody reads any more
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, b"", headers=_GONE)
