"""Liveness of the instances that run this process's calls, checked with ``$SRV.PING``.

A call enters the watchdog when an instance accepts it, or when nobody has accepted it
after ``ACCEPT_TIMEOUT``. The watchdog pings each instance that matters at most once per
``PING_INTERVAL``, however many calls wait on it: the one that accepted a call, or, for a
call not yet accepted, every instance of the agent it was sent to (and any instance of
that agent found frozen, even once its registry entry has expired: a frozen client keeps
its subscriptions until the server drops it). A frozen instance is pinged on until it
answers or is gone, and meanwhile callers pin their calls to the agent's other instances
(:meth:`avoid`). No responders means the instance is gone;
no answer within ``PING_TIMEOUT`` means it is frozen. Pings run in the background, and
each call is judged on the newest state of its instances, so an instance already known
to be frozen costs a new call no further wait. A call that depends on a lost instance
receives a :class:`~natsmesh.transport.Signal`. A call not yet accepted whose instances
all answer keeps waiting (it is queued at a live one) until ``UNANSWERED_LIMIT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from natsmesh import protocol, subjects
from natsmesh.transport import Inbox, NoResponders, Signal, Transport

log = logging.getLogger("natsmesh.watchdog")

#: instance ids of a live agent, from the registry view
InstancesOf = Callable[[str], Iterable[str]]
Pair = tuple[str, str]  # (agent, instance id)


class Watched(Protocol):
    """What the watchdog reads of a call (a :class:`~natsmesh.conversation.Watched`)."""

    agent: str
    instance: str | None
    accepted_by: str | None
    sent_at: float
    inbox: Inbox


class Watchdog:
    """One per client; runs only while some call needs watching."""

    def __init__(self, transport: Transport, instances_of: InstancesOf) -> None:
        self._transport = transport
        self._instances_of = instances_of
        self._calls: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: newest ping result per instance: ("alive" | "gone" | "frozen", when it was sent)
        self._state: dict[Pair, tuple[str, float]] = {}
        self._pings: dict[Pair, asyncio.Task[None]] = {}
        self._last_ping: dict[Pair, float] = {}
        #: agent -> its instances now known to be frozen (callers route around them)
        self.frozen: dict[str, set[str]] = {}

    def add(self, call: Watched) -> None:
        """Watch ``call`` from now on; it is judged at once."""
        self._calls.add(call)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")

    def discard(self, call: Watched) -> None:
        self._calls.discard(call)

    async def stop(self) -> None:
        for task in [self._task, *self._pings.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while self._calls or self.frozen:
            self._wake.clear()
            try:
                self._round()
            except Exception:  # never let one bad round stop the watching
                log.exception("liveness check failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(protocol.PING_INTERVAL):
                    await self._wake.wait()

    def _suspects_of(self, call: Watched) -> list[Pair]:
        if call.accepted_by:
            return [(call.agent, call.accepted_by)]
        if call.instance:
            return [(call.agent, call.instance)]
        state = self._state
        sent = call.sent_at
        pairs = []
        for inst in self._instances_of(call.agent):
            pair = (call.agent, inst)
            known = state.get(pair)
            # an instance found gone before this call was sent cannot hold it
            if known is None or known[0] != "gone" or known[1] > sent:
                pairs.append(pair)
        frozen = [p for p, (st, _) in state.items() if st == "frozen" and p[0] == call.agent]
        return pairs + [p for p in frozen if p not in pairs]

    def avoid(self, agent: str) -> set[str]:
        """Instances of ``agent`` known to be frozen; pings go on while calls wait on them."""
        return self.frozen.get(agent, set())

    def _round(self) -> None:
        """Judge every call on what is known; start the pings that are due."""
        now = time.monotonic()
        due: set[Pair] = set()
        for call in list(self._calls):
            suspects = self._suspects_of(call)
            lost = [p for p in suspects if self._state.get(p, ("alive", 0.0))[0] != "alive"]
            # a suspect counts as checked for this call once a ping sent after the call's
            # acceptance (or sending) has answered
            since = call.sent_at
            unchecked = [p for p in suspects if self._state.get(p, ("", 0.0))[1] < since]
            if lost:
                self._signal(call, suspects, lost)
                continue
            if (
                not unchecked
                and call.accepted_by is None
                and now - call.sent_at > protocol.UNANSWERED_LIMIT
            ):
                self._signal(call, suspects, [])
                continue
            due.update(suspects)
        # frozen instances are pinged on until they answer or are gone, so that callers
        # route around them exactly as long as they are frozen
        due.update((agent, inst) for agent, insts in self.frozen.items() for inst in insts)
        for pair in due:
            if pair in self._pings:
                continue
            if now - self._last_ping.get(pair, 0.0) < protocol.PING_INTERVAL:
                continue
            self._last_ping[pair] = now
            self._pings[pair] = asyncio.get_running_loop().create_task(self._ping(pair))

    def _signal(self, call: Watched, suspects: list[Pair], lost: list[Pair]) -> None:
        states = {self._state[p][0] for p in lost}
        reason = "gone" if "gone" in states else ("frozen" if states else "unanswered")
        alive = [
            inst
            for (agent, inst), (st, _) in self._state.items()
            if agent == call.agent and st == "alive"
        ]
        details = {
            "instance": call.accepted_by or (lost[0][1] if len(suspects) == 1 and lost else None),
            "suspects": [p[1] for p in lost],
            "alive": alive,
            "accepted": call.accepted_by is not None,
        }
        self._calls.discard(call)
        call.inbox.put(Signal(reason, details))

    async def _ping(self, pair: Pair) -> None:
        agent, instance = pair
        sent = time.monotonic()
        subject = subjects.service_subjects("PING", agent, instance)[2]
        try:
            await self._transport.request(subject, b"", protocol.PING_TIMEOUT)
            result = "alive"
        except NoResponders:
            result = "gone"
        except TimeoutError:
            result = "frozen"
        except Exception:
            result = "alive"  # the connection is in trouble: that is not the instance's fault
        finally:
            self._pings.pop(pair, None)
        self._state[pair] = (result, sent)
        if result == "frozen":
            self.frozen.setdefault(agent, set()).add(instance)
        elif agent in self.frozen:
            self.frozen[agent].discard(instance)
            if not self.frozen[agent]:
                del self.frozen[agent]
        if len(self._state) > 2000:
            self._prune()
        self._wake.set()

    def _prune(self) -> None:
        cutoff = time.monotonic() - 60
        self._state = {p: v for p, v in self._state.items() if v[1] > cutoff}
        self._last_ping = {p: t for p, t in self._last_ping.items() if t > cutoff}
