"""Liveness of the instances that run this process's calls, checked with ``$SRV.PING``.

A call enters the watchdog when an instance accepts it, or when nobody has accepted it
after ``ACCEPT_TIMEOUT``. Every ``PING_INTERVAL`` the watchdog pings each instance that
matters once, however many calls wait on it: the one that accepted a call, or, for a
call not yet accepted, every instance of the agent it was sent to. No responders means
the instance is gone; no answer within ``PING_TIMEOUT`` means it is frozen. Either way
each call that depends on it receives a :class:`~natsmesh.transport.Signal`. A call not
yet accepted whose instances all answer keeps waiting: it is queued at a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from natsmesh import protocol, subjects
from natsmesh.transport import NoResponders, Signal, Transport

if TYPE_CHECKING:
    from natsmesh.conversation import Conversation

log = logging.getLogger("natsmesh.watchdog")

#: instance ids of a live agent, from the registry view
InstancesOf = Callable[[str], Iterable[str]]


class Watchdog:
    """One per client; runs only while some call needs watching."""

    def __init__(self, transport: Transport, instances_of: InstancesOf) -> None:
        self._transport = transport
        self._instances_of = instances_of
        self._calls: set[Conversation] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: instances found gone, and when: they are no longer suspects of new calls
        self._gone: dict[str, float] = {}

    def add(self, call: Conversation) -> None:
        """Watch ``call`` from now on; its first check runs at once."""
        self._calls.add(call)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")

    def discard(self, call: Conversation) -> None:
        self._calls.discard(call)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._calls:
            self._wake.clear()
            try:
                await self._check()
            except Exception:  # never let one bad round stop the watching
                log.exception("liveness check failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(protocol.PING_INTERVAL):
                    await self._wake.wait()

    def _suspects_of(self, call: Conversation) -> list[tuple[str, str]]:
        if call.accepted_by:
            return [(call.agent, call.accepted_by)]
        if call.instance:
            return [(call.agent, call.instance)]
        gone = self._gone
        sent = call.sent_at
        # an instance found gone before this call was sent cannot hold it
        return [
            (call.agent, i)
            for i in self._instances_of(call.agent)
            if i not in gone or gone[i] > sent
        ]

    async def _check(self) -> None:
        calls = list(self._calls)
        wanted = {pair for call in calls for pair in self._suspects_of(call)}
        pairs = sorted(wanted)
        states = await asyncio.gather(*(self._ping(agent, inst) for agent, inst in pairs))
        state = dict(zip(pairs, states, strict=True))
        now = time.monotonic()
        for (_, inst), st in state.items():
            if st == "gone":
                self._gone[inst] = now
        if len(self._gone) > 1000:
            self._gone = {i: t for i, t in self._gone.items() if now - t < 60}
        for call in calls:
            if call not in self._calls:
                continue
            mine = self._suspects_of(call)
            lost = [pair[1] for pair in mine if pair in state and state[pair] != "alive"]
            if not lost:
                continue
            alive = [
                inst
                for agent, inst in pairs
                if agent == call.agent and state[(agent, inst)] == "alive"
            ]
            reasons = {state[(call.agent, inst)] for inst in lost}
            details = {
                "instance": call.accepted_by or (lost[0] if len(mine) == 1 else None),
                "suspects": lost,
                "alive": alive,
                "accepted": call.accepted_by is not None,
            }
            self._calls.discard(call)
            call.inbox.put(Signal("frozen" if reasons == {"frozen"} else "gone", details))

    async def _ping(self, agent: str, instance: str) -> str:
        subject = subjects.service_subjects("PING", agent, instance)[2]
        try:
            await self._transport.request(subject, b"", protocol.PING_TIMEOUT)
        except NoResponders:
            return "gone"
        except TimeoutError:
            return "frozen"
        except Exception:
            return "alive"  # the connection is in trouble: that is not the instance's fault
        return "alive"
