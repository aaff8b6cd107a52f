"""The NATS services protocol (ADR-32): ``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS``.

:class:`ServiceResponder` owns an instance's ``$SRV`` subscriptions and its request
counters, the shape of nats.py's ``micro.Service``; the runtime builds one and feeds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Any

from natsmesh import subjects, wire

#: callers counted apart per endpoint; the rest are counted together as "(others)"
MAX_CALLERS = 100
PING_TYPE = "io.nats.micro.v1.ping_response"
INFO_TYPE = "io.nats.micro.v1.info_response"
STATS_TYPE = "io.nats.micro.v1.stats_response"


@dataclasses.dataclass
class EndpointStats:
    num_requests: int = 0
    num_errors: int = 0
    processing_time: int = 0
    last_error: str = ""
    #: request bodies received and reply bodies (chunks included) sent
    bytes_in: int = 0
    bytes_out: int = 0
    #: per calling agent: [calls, bytes in, bytes out]
    callers: dict[str, list[int]] = dataclasses.field(default_factory=dict)


class ServiceStats:
    """Per-tool request counters for ``$SRV.STATS``."""

    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointStats] = {}

    def count(
        self,
        tool: str,
        elapsed_ns: int,
        error_type: str | None,
        bytes_in: int = 0,
        bytes_out: int = 0,
        caller: str = "",
    ) -> None:
        stats = self.endpoints.get(tool)
        if stats is None:
            stats = self.endpoints[tool] = EndpointStats()
        stats.num_requests += 1
        stats.processing_time += elapsed_ns
        stats.bytes_in += bytes_in
        stats.bytes_out += bytes_out
        edge = stats.callers.get(caller)
        if edge is None:
            if len(stats.callers) >= MAX_CALLERS:
                caller = "(others)"
            edge = stats.callers.setdefault(caller, [0, 0, 0])
        edge[0] += 1
        edge[1] += bytes_in
        edge[2] += bytes_out
        if error_type:
            stats.num_errors += 1
            stats.last_error = error_type


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One tool as the services protocol lists it."""

    name: str
    subject: str
    queue_group: str
    capability: str
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class ServiceIdentity:
    """Who answers: the agent's name, instance id, version and description."""

    name: str
    instance_id: str
    version: str
    description: str
    started_at: float


class ServiceResponder:
    """Answers ``$SRV.*`` for one instance; ``extra()`` adds figures to the STATS metadata."""

    def __init__(
        self,
        identity: ServiceIdentity,
        endpoints: Sequence[Endpoint],
        extra: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.identity = identity
        self.endpoints = list(endpoints)
        self.stats = ServiceStats()
        self._extra = extra
        self._subs: list[Any] = []
        self._nc: Any = None

    async def start(self, nc: Any) -> None:
        """Subscribe to the nine control subjects of this instance."""
        self._nc = nc
        ident = self.identity
        for verb in subjects.SERVICE_VERBS:
            for subject in subjects.service_subjects(verb, ident.name, ident.instance_id):
                self._subs.append(await nc.subscribe(subject, cb=self._on_request))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def _on_request(self, msg: Any) -> None:
        body = self.answer(msg.subject)
        if body is not None and msg.reply and self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.publish(msg.reply, body)

    def answer(self, subject: str) -> bytes | None:
        """The JSON answer to a ``$SRV.*`` request, or ``None`` for an unknown verb."""
        verb = subject.split(".")[1] if subject.count(".") >= 1 else ""
        if verb == "PING":
            return wire.encode_json(self._base(PING_TYPE))
        if verb == "INFO":
            return wire.encode_json(self.info())
        if verb == "STATS":
            return wire.encode_json(self.stats_body())
        return None

    def _base(self, kind: str) -> dict[str, Any]:
        ident = self.identity
        return {
            "type": kind,
            "name": ident.name,
            "id": ident.instance_id,
            "version": ident.version,
            "metadata": {"natsmesh.runtime": "python"},
        }

    def info(self) -> dict[str, Any]:
        body = self._base(INFO_TYPE)
        body["description"] = self.identity.description
        body["endpoints"] = [
            {
                "name": e.name,
                "subject": e.subject,
                "queue_group": e.queue_group,
                "metadata": {"capability": e.capability, "tags": ",".join(e.tags)},
            }
            for e in self.endpoints
        ]
        return body

    def stats_body(self) -> dict[str, Any]:
        body = self._base(STATS_TYPE)
        started = datetime.datetime.fromtimestamp(self.identity.started_at, datetime.UTC)
        body["started"] = started.isoformat().replace("+00:00", "Z")
        endpoints = []
        for e in self.endpoints:
            s = self.stats.endpoints.get(e.name) or EndpointStats()
            endpoints.append(
                {
                    "name": e.name,
                    "subject": e.subject,
                    "queue_group": e.queue_group,
                    "num_requests": s.num_requests,
                    "num_errors": s.num_errors,
                    "last_error": s.last_error,
                    "processing_time": s.processing_time,
                    "average_processing_time": s.processing_time // s.num_requests
                    if s.num_requests
                    else 0,
                    "data": {
                        "bytes_in": s.bytes_in,
                        "bytes_out": s.bytes_out,
                        "callers": {
                            c: {"calls": n, "bytes_in": i, "bytes_out": o}
                            for c, (n, i, o) in s.callers.items()
                        },
                    },
                }
            )
        body["endpoints"] = endpoints
        extra = {k: str(v) for k, v in self._extra().items()}
        body["metadata"] = {**body["metadata"], **extra}
        return body
