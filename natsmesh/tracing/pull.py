"""Batches from a durable JetStream pull consumer, fetched over one inbox subscription.

nats-py's ``PullSubscription.fetch`` waits for every message of a batch with its own task,
timer and uuid (about 8 µs per message, half the collector's CPU); here the inbox's
callback appends each message to a list and one future ends the request. The protocol
is JetStream's: a request on ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` (JSON:
``batch``, then ``no_wait`` or ``expires`` in ns) with the inbox as reply subject; the
server answers with up to ``batch`` messages, then, if it sent fewer, a status message
(404 no messages, 408 request expired; 100 is an idle heartbeat). Any other status is an
error that ``fetch`` raises as :class:`PullFailed`: 409 (consumer deleted, too many
waiting requests, ...), 503 (no responders: the consumer, or the stream, is gone), so
that the caller waits before asking again instead of spinning, and can re-create the
consumer (``ensure_consumer``). After a full batch the next is requested at once, so
that nats-server sends it while the collector encodes this one; on stop, whatever came
ahead is nak'ed (redelivered at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX, ConsumerConfig, Header
from nats.js.errors import NotFoundError

__all__ = ["PullFailed", "Puller"]

log = logging.getLogger("natsmesh.collector")

_STATUS = Header.STATUS.value  # nats-py hands over a status message's code in this header
_HEARTBEAT = "100"


class PullFailed(Exception):
    """The server ended a pull request with an error status (409, 503, ...)."""

    def __init__(self, stream: str, consumer: str, status: str, description: str) -> None:
        super().__init__(
            f"pulling from consumer {consumer!r} of stream {stream!r}: {status} "
            f"{description or 'error'}".rstrip()
        )
        self.status = status
        self.description = description

    @property
    def consumer_gone(self) -> bool:
        """Whether the consumer (or its stream) no longer exists: no responders (503),
        or "consumer deleted" (409)."""
        return self.status == "503" or "deleted" in self.description.lower()


class Puller:
    """Fetches batches of messages from one durable pull consumer (created if missing)."""

    def __init__(self, nc: NATS, stream: str, consumer: str) -> None:
        self.nc = nc
        self.stream = stream
        self.consumer = consumer
        self._next = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._msgs: list[Msg] = []
        self._wanted = 0
        self._done: asyncio.Future[None] | None = None
        self._sub: Subscription | None = None
        #: the error status that ended the last request, raised by the next ``fetch``
        self._failed: PullFailed | None = None

    async def start(self, config: ConsumerConfig) -> None:
        """Create the consumer with ``config`` unless it exists; subscribe the inbox."""
        await self.ensure_consumer(config)
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_msg)

    async def ensure_consumer(self, config: ConsumerConfig) -> bool:
        """Create the consumer with ``config`` unless it exists; whether it was created."""
        js = self.nc.jetstream()
        try:
            await js.consumer_info(self.stream, self.consumer)
            return False
        except NotFoundError:
            config.name = config.durable_name = self.consumer
            await js.add_consumer(self.stream, config)
            return True

    @property
    def held(self) -> list[Msg]:
        """The messages fetched ahead, not handed out yet."""
        return self._msgs

    async def stop(self) -> None:
        """Unsubscribe; messages fetched ahead are handed back (nak) for redelivery now."""
        if self._done is not None:
            await self._wait(0.0)
        for m in self._msgs:
            with contextlib.suppress(Exception):
                await m.nak()
        self._msgs = []
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages: those the stream has now, else the first that arrive
        within ``timeout`` seconds (then whatever else arrived until the request ends).
        After a full batch the next one is asked for at once, to arrive meanwhile.
        Raises :class:`PullFailed` when the server answered with an error status."""
        if self._done is not None:
            await self._wait(0.0)
        if len(self._msgs) < batch:
            # what is there, at once; if nothing is, a request that waits
            for wait in (False, True):
                self._raise_failure()
                await self._send(batch - len(self._msgs), timeout if wait else None)
                await self._wait(timeout if wait else 0.0)
                if self._msgs:
                    break
            else:
                self._raise_failure()
        msgs, self._msgs = self._msgs[:batch], self._msgs[batch:]
        if len(msgs) == batch and not self._msgs:
            await self._send(batch, None)
        return msgs

    def _raise_failure(self) -> None:
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    async def _send(self, batch: int, expires: float | None) -> None:
        request: dict[str, object] = {"batch": batch}
        if expires is None:
            request["no_wait"] = True
        else:
            request["expires"] = int(expires * 1e9)
        self._wanted = len(self._msgs) + batch
        self._done = asyncio.get_running_loop().create_future()
        await self.nc.publish(self._next, json.dumps(request).encode(), reply=self._inbox)

    async def _wait(self, expires: float) -> None:
        """Until the server ends the request (batch full, a status); the margin covers a
        lost link."""
        assert self._done is not None
        try:
            await asyncio.wait_for(self._done, expires + 2.0)
        except TimeoutError:
            pass
        finally:
            self._done = None

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(_STATUS) if headers else None
        if status is None:
            self._msgs.append(msg)
            if len(self._msgs) < self._wanted:
                return
        elif status == _HEARTBEAT:
            return
        elif status not in ("404", "408"):
            description = (headers or {}).get("Description", "")
            self._failed = PullFailed(self.stream, self.consumer, status, description)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
