"""The agent process: connect, register, serve, heartbeat, and stop in order.

Stopping happens in this order, so that no caller sees an error:

1. stop taking work: unsubscribe the request subjects (the queue group sends new
   calls to other replicas; a lone instance answers "no responders", which callers
   fail over on);
2. finish the calls in flight (up to the call timeout);
3. deregister: delete the registry key, so every watcher sees the instance leave;
4. publish the remaining spans;
5. drain and close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from natsmesh import headers as H
from natsmesh import subjects
from natsmesh.client import MeshClient
from natsmesh.config import Settings
from natsmesh.connection import Hooks, connect_nats
from natsmesh.dispatch import Dispatcher, Outcome, error_outcome
from natsmesh.errors import Cancelled, Unavailable
from natsmesh.registry import Registration, RegistryView, bucket_ttl, check_registrable, open_bucket
from natsmesh.responder import Responder
from natsmesh.services import Endpoint, ServiceIdentity, ServiceResponder
from natsmesh.specs import AgentSpec, ToolSpec
from natsmesh.wire import PROTOCOL, AgentRecord, DependencyRecord, ToolRecord

if TYPE_CHECKING:
    from natsmesh.tracing.spans import Tracing

log = logging.getLogger("natsmesh.runtime")

#: requests waiting in one subscription before NATS drops them (callbacks only start tasks
#: or refuse, so the queue stays short; the bound keeps memory finite under a flood)
PENDING_MSGS = 65_536
PENDING_BYTES = 64 * 1024 * 1024


def tool_record(spec: ToolSpec) -> ToolRecord:
    """The registry view of a tool spec."""
    return ToolRecord(
        name=spec.name,
        capability=spec.capability,
        version=spec.version,
        tags=spec.tags,
        description=spec.description,
        input_schema=spec.signature.input_schema,
        output_schema=spec.signature.output_schema,
        dependencies=tuple(
            DependencyRecord(d.capability, d.tags, d.version) for d in spec.dependencies
        ),
        idempotent=spec.idempotent,
        kind="llm_provider" if spec.provider is not None else "tool",
        stream=spec.signature.is_stream,
    )


class Runtime:
    """Runs one agent instance. ``await start()``, then ``await stop()``; or ``run()``."""

    def __init__(
        self,
        agent: AgentSpec,
        tools: Sequence[ToolSpec],
        settings: Settings | None = None,
    ) -> None:
        self.agent = agent
        self.tools = list(tools)
        self.settings = settings or Settings.from_env()
        self.instance_id = f"{agent.name}-{secrets.token_hex(4)}"
        self._reply_headers = {H.INSTANCE: self.instance_id}
        self.max_in_flight = agent.max_in_flight or self.settings.max_in_flight
        self.nc: NATS | None = None
        self.view: RegistryView | None = None
        self.client: MeshClient | None = None
        self.tracing: Tracing | None = None
        self._registration: Registration | None = None
        self._subs: list[Any] = []
        self._control_subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: calls running, by reply subject (what a cancel names)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks_bg: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._accepting = False
        self.services = ServiceResponder(
            ServiceIdentity(
                agent.name, self.instance_id, agent.version, agent.description, time.time()
            ),
            [
                Endpoint(
                    t.name,
                    subjects.cap_subject(t.capability, agent.name, self.settings.prefix),
                    subjects.queue_group(agent.name),
                    t.capability,
                    t.tags,
                )
                for t in self.tools
            ],
            self.extra_stats,
        )
        self.stats = self.services.stats
        self.started_at = time.time()

    @property
    def key(self) -> str:
        return subjects.registry_key(self.agent.name, self.instance_id)

    def registry_record(self) -> AgentRecord:
        """This instance's registry record."""
        return AgentRecord(
            name=self.agent.name,
            instance_id=self.instance_id,
            version=self.agent.version,
            description=self.agent.description,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            tools=tuple(tool_record(t) for t in self.tools),
            protocol=PROTOCOL,
        )

    async def start(self) -> None:
        """Connect, open the registry, subscribe, then register (in that order).

        Raises :class:`~natsmesh.records.RecordError` (a ``ValueError``) before connecting
        when the instance's record breaks the registry's bounds."""
        check_registrable(self.registry_record())
        s = self.settings
        hooks = Hooks()
        self.nc = nc = await connect_nats(s, f"natsmesh {self.instance_id}", hooks)
        kv = await open_bucket(nc.jetstream(), s)
        interval = await bucket_ttl(kv, s.registry_ttl) / 3
        self.view = view = RegistryView(kv)
        await view.start()
        if s.tracing:
            await self._start_tracing(nc)
        await self._prepare_providers()
        self.client = MeshClient(
            nc, view, s, caller=f"{self.agent.name}/{self.instance_id}", tracing=self.tracing
        )
        await self._subscribe(nc)
        await nc.flush()
        self._registration = Registration(kv, self.key, self.registry_record(), interval)
        await self._registration.start()
        hooks.on_reconnect.append(self._on_reconnect)
        hooks.on_disconnect.append(self.client.connection_lost)
        log.info(
            "%s serving %s as %s",
            self.agent.name,
            ", ".join(t.name for t in self.tools) or "no tools",
            self.instance_id,
        )

    async def _prepare_providers(self) -> None:
        """Import litellm and choose models now, so the first call does not pay for it."""
        providers = [t for t in self.tools if t.provider is not None]
        if providers:
            from natsmesh.genai.provider import prepare

            for t in providers:
                assert t.provider is not None
                await asyncio.to_thread(prepare, t.provider, t.name)

    async def _start_tracing(self, nc: NATS) -> None:
        from natsmesh.tracing.spans import Tracing

        self.tracing = await Tracing.open(nc, self.settings, self.agent.name, self.instance_id)

    async def _subscribe(self, nc: NATS) -> None:
        assert self.client is not None
        prefix = self.settings.prefix
        group = subjects.queue_group(self.agent.name)
        for spec in self.tools:
            dispatcher = Dispatcher(
                spec,
                self.client,
                self.agent.name,
                self.tracing,
                nc.max_payload,
                self.settings.debug,
                payload_limit=self.settings.trace_payload_limit
                if self.settings.trace_payloads or self.agent.trace_payloads
                else None,
            )
            cb = self._handler(dispatcher)
            cap = subjects.cap_subject(spec.capability, self.agent.name, prefix)
            self._subs.append(
                await nc.subscribe(
                    cap,
                    queue=group,
                    cb=cb,
                    pending_msgs_limit=PENDING_MSGS,
                    pending_bytes_limit=PENDING_BYTES,
                )
            )
            inst = subjects.inst_subject(self.instance_id, spec.capability, prefix)
            self._subs.append(
                await nc.subscribe(
                    inst, cb=cb, pending_msgs_limit=PENDING_MSGS, pending_bytes_limit=PENDING_BYTES
                )
            )
        self._control_subs.append(
            await nc.subscribe(
                subjects.cancel_subject(self.instance_id, prefix), cb=self._on_cancel
            )
        )
        await self.services.start(nc)
        self._accepting = True

    def _handler(self, dispatcher: Dispatcher) -> Any:
        loop = asyncio.get_running_loop()
        tasks = self._tasks
        running = self._running

        async def on_request(msg: Msg) -> None:
            if not self._accepting or self._in_flight >= self.max_in_flight:
                reason = (
                    "is stopping" if not self._accepting else "is at its limit of calls in flight"
                )
                outcome = error_outcome(Unavailable(f"{self.instance_id} {reason}"))
                await self._reply(msg, outcome, dispatcher.spec.name, 0, None)
                return
            self._in_flight += 1
            task = loop.create_task(self._serve(msg, dispatcher))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if msg.reply:
                running[msg.reply] = task

        return on_request

    async def _serve(self, msg: Msg, dispatcher: Dispatcher) -> None:
        """Run one call and send its final reply; a cancelled call answers ``cancelled``."""
        started = time.perf_counter_ns()
        task = asyncio.current_task()
        assert self.client is not None
        responder = Responder(
            self.client.transport,
            msg.reply,
            self.instance_id,
            msg.headers,
            task,
            self.client.transport.max_payload,
        )
        try:
            try:
                outcome = await dispatcher.serve(msg.data, msg.headers, responder)
            except asyncio.CancelledError:
                if task is not None:
                    task.uncancel()
                outcome = error_outcome(Cancelled(f"{dispatcher.spec.name} was cancelled"))
            finally:
                responder.stop()
            elapsed = time.perf_counter_ns() - started
            try:
                await self._reply(msg, outcome, dispatcher.spec.name, elapsed, responder)
            finally:
                if outcome.span is not None:  # after the reply: the connection sends it first
                    asyncio.get_running_loop().call_soon(dispatcher.finish, outcome, time.time_ns())
        except Exception:
            log.exception("failed to answer a request for %s", dispatcher.spec.name)
        finally:
            self._in_flight -= 1
            if msg.reply:
                self._running.pop(msg.reply, None)

    async def _reply(
        self, msg: Msg, outcome: Outcome, tool: str, elapsed_ns: int, responder: Responder | None
    ) -> None:
        out = len(outcome.body) + (responder.chunk_bytes if responder is not None else 0)
        caller = msg.headers.get(H.CALLER, "") if msg.headers else ""
        self.stats.count(
            tool, elapsed_ns, outcome.error_type, len(msg.data), out, caller.split("/", 1)[0]
        )
        if not msg.reply or self.nc is None:
            return
        hdrs = self._reply_headers
        if outcome.error_type:
            hdrs = {**hdrs, H.ERROR: outcome.error_type}
        if responder is not None and responder.chunks:
            hdrs = responder.final_headers(hdrs)
        with contextlib.suppress(Exception):
            await self.nc.publish(msg.reply, outcome.body, headers=hdrs)

    async def _on_cancel(self, msg: Msg) -> None:
        """A caller cancels a call: the body is the call's reply subject."""
        task = self._running.get(msg.data.decode("utf-8", "replace"))
        if task is not None:
            task.cancel()

    async def _on_reconnect(self) -> None:
        # in the background: the connection's callback must not wait for JetStream
        task = asyncio.create_task(self._recover(), name="recover after reconnect")
        self._tasks_bg.add(task)
        task.add_done_callback(self._tasks_bg.discard)

    async def _recover(self) -> None:
        if self._registration is not None and self._accepting:
            await self._registration.refresh()
        if self.view is not None:
            with contextlib.suppress(Exception):
                await self.view.restart()

    def extra_stats(self) -> dict[str, Any]:
        """Figures for ``$SRV.STATS``: calls in flight and span export counters."""
        data: dict[str, Any] = {"in_flight": self._in_flight, "max_in_flight": self.max_in_flight}
        dropped = getattr(self.nc, "dropped", None)
        if dropped is not None:
            data["messages_dropped"] = sum(dropped.values())
        if self.tracing is not None and self.tracing.processor is not None:
            data.update(self.tracing.processor.stats())
        return data

    async def stop(self, grace: float | None = None) -> None:
        """Stop in the documented order; calls in flight get ``grace`` seconds to finish."""
        nc = self.nc
        if nc is None:
            return
        self._accepting = False
        # drain, not unsubscribe: requests already delivered are answered ("unavailable",
        # which callers fail over on) instead of being dropped and left to time out
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.drain()
        self._subs.clear()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=1)
        if self._tasks:
            wait = self.settings.timeout if grace is None else grace
            _, pending = await asyncio.wait(set(self._tasks), timeout=wait)
            for task in pending:
                task.cancel()
            if pending:  # let them run their cleanup and end their spans (bounded)
                await asyncio.wait(pending, timeout=1.0)
        if self._registration is not None:
            await self._registration.stop()
        for sub in self._control_subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self.services.stop()
        if self.tracing is not None:
            await self.tracing.stop()
        if self.view is not None:
            await self.view.stop()
        if self.client is not None:
            await self.client.watchdog.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), 5)
        if not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
        self.nc = None
        log.info("%s stopped", self.instance_id)

    async def serve_forever(self) -> None:
        """Start, serve until SIGINT or SIGTERM, then stop in order."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def event_loop_runner() -> asyncio.Runner:
    """An asyncio runner on uvloop where it is installed."""
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.Runner()
