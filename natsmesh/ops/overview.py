"""What ``natsmesh list`` and ``natsmesh status`` show, as plain rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from natsmesh.client import MeshClient
from natsmesh.registry import RegistryView
from natsmesh.specs import DependencySpec
from natsmesh.wire import AgentRecord


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    return f"{s // 3600}h{(s % 3600) // 60}m"


def dependency_counts(record: AgentRecord, view: RegistryView) -> tuple[int, int]:
    """(resolved, declared) dependencies of an instance, from the live view."""
    deps = {(d.capability, d.tags, d.version) for t in record.tools for d in t.dependencies}
    resolved = sum(
        1 for cap, tags, version in deps if view.select(DependencySpec(cap, tags, version))
    )
    return resolved, len(deps)


def agent_type(record: AgentRecord) -> str:
    """``llm-provider`` for an agent whose tools complete LLM conversations, else ``agent``."""
    if record.tools and all(t.kind == "llm_provider" for t in record.tools):
        return "llm-provider"
    return "agent"


def traffic(stats: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Calls and body bytes per agent and per caller→callee edge, from ``$SRV.STATS``
    answers (counted by each instance since it started)."""
    agents: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for answer in stats:
        name = str(answer.get("name", "?"))
        row = agents.setdefault(name, {"agent": name, "calls": 0, "bytes_in": 0, "bytes_out": 0})
        for endpoint in answer.get("endpoints") or ():
            data = endpoint.get("data") or {}
            row["calls"] += int(endpoint.get("num_requests", 0))
            row["bytes_in"] += int(data.get("bytes_in", 0))
            row["bytes_out"] += int(data.get("bytes_out", 0))
            for caller, c in (data.get("callers") or {}).items():
                edge = edges.setdefault(
                    (caller or "?", name),
                    {"caller": caller or "?", "callee": name, "calls": 0, "bytes_in": 0,
                     "bytes_out": 0},
                )  # fmt: skip
                edge["calls"] += int(c.get("calls", 0))
                edge["bytes_in"] += int(c.get("bytes_in", 0))
                edge["bytes_out"] += int(c.get("bytes_out", 0))
    return {
        "agents": sorted(agents.values(), key=lambda r: r["agent"]),
        "edges": sorted(edges.values(), key=lambda r: (r["caller"], r["callee"])),
    }


def instance_rows(view: RegistryView) -> list[dict[str, Any]]:
    """One row per live instance: NAME, STATUS, DEPS, VERSION, INSTANCE, AGE, LAST SEEN."""
    now = time.time()
    rows = []
    for key, record in sorted(view.records.items(), key=lambda kv: (kv[1].name, kv[1].started_at)):
        resolved, declared = dependency_counts(record, view)
        rows.append(
            {
                "name": record.name,
                "runtime": record.runtime,
                "type": agent_type(record),
                "status": "healthy" if resolved == declared else "degraded",
                "deps": f"{resolved}/{declared}",
                "version": record.version,
                "instance": record.instance_id,
                "age": _ago(now - record.started_at),
                "last_seen": _ago(now - view.last_seen.get(key, now)) + " ago",
                "host": record.host,
                "pid": record.pid,
            }
        )
    return rows


def tool_rows(view: RegistryView) -> list[dict[str, Any]]:
    """One row per tool and agent: TOOL, AGENT, CAPABILITY, TAGS, VERSION, INSTANCES."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for record in view.records.values():
        for tool in record.tools:
            row = seen.setdefault(
                (tool.name, record.name),
                {
                    "tool": tool.name,
                    "agent": record.name,
                    "capability": tool.capability,
                    "tags": ",".join(tool.tags),
                    "version": tool.version,
                    "instances": 0,
                    "description": tool.description,
                    "input_schema": tool.input_schema,
                },
            )
            row["instances"] += 1
    return sorted(seen.values(), key=lambda r: (r["tool"], r["agent"]))


async def service_stats(client: MeshClient, timeout: float = 0.5) -> list[dict[str, Any]]:
    """Every instance's ``$SRV.STATS`` answer (gathered for ``timeout`` seconds)."""
    nc = client.nc
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish("$SRV.STATS", b"", reply=inbox)
        expected = len(client.view.records)
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            async with asyncio.timeout(timeout):
                while len(answers) < expected:
                    msg = await sub.next_msg(timeout=timeout)
                    with contextlib.suppress(ValueError):
                        answers.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return answers


async def status(client: MeshClient) -> dict[str, Any]:
    """NATS URL, server version, JetStream, bucket, agents, and span export counters."""
    nc = client.nc
    info = nc._server_info  # nats-py keeps the INFO the server sent
    js = nc.jetstream()
    js_enabled = True
    try:
        await js.account_info()
    except Exception:
        js_enabled = False
    stats = await service_stats(client)
    dropped = sum(int(s.get("metadata", {}).get("spans_dropped", 0)) for s in stats)
    failed = sum(int(s.get("metadata", {}).get("spans_failed", 0)) for s in stats)
    # frames the agents' connections refused (malformed, or JetStream deliveries onto
    # mesh subjects): see natsmesh.connection.dropped_messages
    refused = sum(int(s.get("metadata", {}).get("messages_dropped", 0)) for s in stats)
    return {
        "nats_url": nc.connected_url.geturl() if nc.connected_url else client.settings.nats_url,
        "server_version": info.get("version", "?"),
        "server_name": info.get("server_name", "?"),
        "jetstream": js_enabled,
        "registry_bucket": client.settings.registry_bucket,
        "spans_stream": client.settings.spans_stream,
        "agents": len({r.name for r in client.view.records.values()}),
        "instances": len(client.view.records),
        "spans_dropped": dropped,
        "spans_failed": failed,
        "messages_dropped": refused,
        "traffic": traffic(stats),
    }
