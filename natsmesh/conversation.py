"""The caller's side of one attempt of a call: send, then read the reply subject.

A protocol-2 worker may send ``accepted``, chunks and probes before the final reply
(transport.py answers probes). While the call runs, the :class:`~natsmesh.watchdog.Watchdog`
checks the instance that accepted it, or, while nobody has accepted it after
``ACCEPT_TIMEOUT``, the instances that may hold it; when one is lost it puts a
:class:`~natsmesh.transport.Signal` into the inbox and :meth:`Conversation.run` raises
:class:`Lost`. Cancelling the caller's task sends a cancel to the instance that accepted
the call (or, before acceptance, to the instance that accepts it within ``CANCEL_LINGER``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from natsmesh import headers as H
from natsmesh import protocol, subjects
from natsmesh.errors import ToolTimeout
from natsmesh.transport import Inbox, Message, NoResponders, Signal, Transport

if TYPE_CHECKING:
    from natsmesh.watchdog import Watchdog


class Lost(Exception):
    """The instance that ran the call, or may have received it, is gone or frozen."""

    def __init__(self, reason: str, details: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details

    @property
    def instance(self) -> str | None:
        return self.details.get("instance")

    @property
    def alive(self) -> list[str]:
        """Instances of the same agent that answered their ping."""
        return list(self.details.get("alive") or ())


ChunkSink = Callable[[Message], None]


class Conversation:
    """One attempt: one request and what comes back on its own inbox."""

    __slots__ = ("accepted_by", "agent", "inbox", "instance", "prefix", "sent_at", "watched")

    def __init__(self, inbox: Inbox, agent: str, instance: str | None, prefix: str) -> None:
        self.inbox = inbox
        self.agent = agent
        #: the instance the request was pinned to, if it was
        self.instance = instance
        self.prefix = prefix
        #: the instance that said ``accepted``
        self.accepted_by: str | None = None
        self.watched = False
        #: when the request was sent (``time.monotonic()``)
        self.sent_at = 0.0

    async def run(
        self,
        transport: Transport,
        watchdog: Watchdog | None,
        subject: str,
        body: bytes,
        hdrs: dict[str, str],
        deadline: float,
        on_chunk: ChunkSink | None = None,
    ) -> Message:
        """Send the request and return the final reply.

        Raises :class:`NoResponders`, :class:`Lost`, :class:`ToolTimeout`; a cancelled
        caller tells the worker before the cancellation goes on. ``watchdog`` is ``None``
        for protocol-1 providers, which never accept.
        """
        inbox = self.inbox
        linger = False
        try:
            self.sent_at = time.monotonic()
            await transport.publish(subject, body, hdrs, reply=inbox.subject)
            while True:
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise ToolTimeout(f"no reply from {self.agent} within the deadline")
                quiet = watchdog is not None and self.accepted_by is None and not self.watched
                try:
                    item = await inbox.get(
                        min(remaining, protocol.ACCEPT_TIMEOUT) if quiet else remaining
                    )
                except TimeoutError:
                    if quiet and watchdog is not None:
                        self.watched = True
                        watchdog.add(self)
                    continue
                if isinstance(item, Signal):
                    raise Lost(item.reason, item.details)
                kind = item.headers.get(H.KIND) if item.headers else None
                if kind is None or kind == H.FINAL:
                    if item.headers and item.headers.get(H.STATUS) == H.NO_RESPONDERS:
                        raise NoResponders(subject)
                    return item
                if kind == H.CHUNK:
                    if on_chunk is not None:
                        on_chunk(item)
                elif kind == H.ACCEPTED and item.headers:
                    self.accepted_by = item.headers.get(H.INSTANCE) or self.instance
                    if watchdog is not None and self.accepted_by:
                        self.watched = True
                        watchdog.add(self)
        except asyncio.CancelledError:
            if watchdog is not None:
                linger = await self._cancel(transport)
            raise
        finally:
            if watchdog is not None and self.watched:
                watchdog.discard(self)
            if not linger:
                inbox.close()

    async def _cancel(self, transport: Transport) -> bool:
        """Tell the worker to stop; returns True when a lingering task took the inbox."""
        if self.accepted_by:
            with contextlib.suppress(Exception):
                await transport.publish(
                    subjects.cancel_subject(self.accepted_by, self.prefix),
                    self.inbox.subject.encode(),
                )
            return False
        _lingering.add(asyncio.ensure_future(_linger(self.inbox, transport, self.prefix)))
        return True


#: cancels still looking for the instance to send them to (see :func:`settle`)
_lingering: set[asyncio.Future[None]] = set()


async def settle(timeout: float = protocol.CANCEL_LINGER) -> None:
    """Wait (up to ``timeout``) until every cancel of this process has been sent: a process
    that exits right after cancelling a call calls this before it closes its connection."""
    if _lingering:
        await asyncio.wait(set(_lingering), timeout=timeout)


async def _linger(inbox: Inbox, transport: Transport, prefix: str) -> None:
    """After a cancel before acceptance: cancel the call at whoever accepts it soon."""
    try:
        end = time.monotonic() + protocol.CANCEL_LINGER
        while (left := end - time.monotonic()) > 0:
            item = await inbox.get(left)
            if isinstance(item, Signal) or not item.headers:
                return
            kind = item.headers.get(H.KIND)
            if kind == H.ACCEPTED and item.headers.get(H.INSTANCE):
                await transport.publish(
                    subjects.cancel_subject(item.headers[H.INSTANCE], prefix),
                    inbox.subject.encode(),
                )
                return
            if kind in (None, H.FINAL):
                return
    except Exception:
        return
    finally:
        inbox.close()
        task = asyncio.current_task()
        _lingering.discard(task)  # type: ignore[arg-type]
