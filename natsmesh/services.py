"""The NATS services protocol (ADR-32): ``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS``."""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING, Any

from natsmesh import subjects, wire

if TYPE_CHECKING:
    from natsmesh.runtime import Runtime

PING_TYPE = "io.nats.micro.v1.ping_response"
INFO_TYPE = "io.nats.micro.v1.info_response"
STATS_TYPE = "io.nats.micro.v1.stats_response"


@dataclasses.dataclass
class EndpointStats:
    num_requests: int = 0
    num_errors: int = 0
    processing_time: int = 0
    last_error: str = ""


class ServiceStats:
    """Per-tool request counters for ``$SRV.STATS``."""

    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointStats] = {}

    def record(self, tool: str, elapsed_ns: int, error_type: str | None) -> None:
        stats = self.endpoints.get(tool)
        if stats is None:
            stats = self.endpoints[tool] = EndpointStats()
        stats.num_requests += 1
        stats.processing_time += elapsed_ns
        if error_type:
            stats.num_errors += 1
            stats.last_error = error_type


def _base(runtime: Runtime, kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "name": runtime.agent.name,
        "id": runtime.instance_id,
        "version": runtime.agent.version,
        "metadata": {"natsmesh.runtime": "python"},
    }


def info(runtime: Runtime) -> dict[str, Any]:
    body = _base(runtime, INFO_TYPE)
    body["description"] = runtime.agent.description
    body["endpoints"] = [
        {
            "name": t.name,
            "subject": subjects.cap_subject(
                t.capability, runtime.agent.name, runtime.settings.prefix
            ),
            "queue_group": subjects.queue_group(runtime.agent.name),
            "metadata": {"capability": t.capability, "tags": ",".join(t.tags)},
        }
        for t in runtime.tools
    ]
    return body


def stats(runtime: Runtime) -> dict[str, Any]:
    body = _base(runtime, STATS_TYPE)
    started = datetime.datetime.fromtimestamp(runtime.started_at, datetime.UTC)
    body["started"] = started.isoformat().replace("+00:00", "Z")
    endpoints = []
    for t in runtime.tools:
        s = runtime.stats.endpoints.get(t.name) or EndpointStats()
        endpoints.append(
            {
                "name": t.name,
                "subject": subjects.cap_subject(
                    t.capability, runtime.agent.name, runtime.settings.prefix
                ),
                "queue_group": subjects.queue_group(runtime.agent.name),
                "num_requests": s.num_requests,
                "num_errors": s.num_errors,
                "last_error": s.last_error,
                "processing_time": s.processing_time,
                "average_processing_time": s.processing_time // s.num_requests
                if s.num_requests
                else 0,
                "data": None,
            }
        )
    body["endpoints"] = endpoints
    body["metadata"] = {**body["metadata"], **{k: str(v) for k, v in runtime.extra_stats().items()}}
    return body


def answer_service(subject: str, runtime: Runtime) -> bytes | None:
    """The JSON answer to a ``$SRV.*`` request, or ``None`` for an unknown verb."""
    verb = subject.split(".")[1] if subject.count(".") >= 1 else ""
    if verb == "PING":
        return wire.encode_json(_base(runtime, PING_TYPE))
    if verb == "INFO":
        return wire.encode_json(info(runtime))
    if verb == "STATS":
        return wire.encode_json(stats(runtime))
    return None
