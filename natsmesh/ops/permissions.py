"""Least-privilege NATS permissions for agents, written as a nats-server config.

Each agent may subscribe only to ``mesh.cap.<capability>.<agent>`` and
``mesh.inst.*.<capability>`` for the capabilities its code declares (so it cannot take
another agent's calls, nor claim another capability under its own name), to
``mesh.cancel.*``, its own inbox and its ``$SRV`` subjects. It may publish only to the
capabilities it depends on (with their cancel and instance-ping subjects), the spans,
and its own registry keys, and use the JetStream API calls a registry watcher needs.
Replies (several per call: accepted, chunks, probes, final) go out through
``allow_responses``, bounded by count and time.

What a subject permission cannot see, the mesh enforces elsewhere: the registry's stream
refuses rollup headers (:func:`natsmesh.registry.harden_bucket`), and a JetStream push
delivery onto a mesh subject is dropped by the receiving connection
(:class:`natsmesh.connection.MeshConnection`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from natsmesh import subjects
from natsmesh.config import Settings
from natsmesh.loader import LoadedAgent
from natsmesh.ops.server import PING_INTERVAL, PING_MAX

JS_API = "$JS.API"
#: users that connect with the default inbox prefix; every other user uses ``_INBOX_<user>``
SHARED_INBOX_USERS = ("admin", "cli", "collector")


@dataclasses.dataclass(frozen=True)
class Responses:
    """``allow_responses``: how many messages a worker may send to one request's reply
    subject, and for how long after the request (a nats-server duration such as ``5m``)."""

    max: int = 10_000
    expires: str = "5m"


def registry_read(settings: Settings) -> list[str]:
    """JetStream API subjects for watching the registry (ordered, ephemeral consumers)."""
    kv_stream = f"KV_{settings.registry_bucket}"
    return [
        f"{JS_API}.INFO",
        f"{JS_API}.STREAM.INFO.{kv_stream}",
        f"{JS_API}.STREAM.INFO.{settings.spans_stream}",
        f"{JS_API}.CONSUMER.CREATE.{kv_stream}",
        f"{JS_API}.CONSUMER.CREATE.{kv_stream}.>",
        f"{JS_API}.CONSUMER.INFO.{kv_stream}.>",
        f"{JS_API}.CONSUMER.DELETE.{kv_stream}.>",
        f"$JS.FC.{kv_stream}.>",
    ]


def caller_publish(settings: Settings, capabilities: Iterable[str] | None) -> list[str]:
    """What calling ``capabilities`` needs (all of them with ``None``): the call subjects,
    cancels, and pings of the instance that runs a call."""
    p = settings.prefix
    out = []
    if capabilities is None:
        out += [f"{p}.cap.>", f"{p}.inst.>"]
    else:
        for cap in sorted(capabilities):
            out += [f"{p}.cap.{cap}.*", f"{p}.inst.*.{cap}"]
        if not out:
            return []
    return [*out, f"{p}.cancel.*", "$SRV.PING.*.*"]


def dependencies(agent: LoadedAgent) -> set[str]:
    """The capabilities an agent's tools call (dependencies, LLM providers and filters)."""
    calls: set[str] = set()
    for tool in agent.tools:
        calls.update(d.capability for d in tool.dependencies)
        llm = getattr(tool.func, "__natsmesh_llm__", None)
        if llm is not None:
            calls.add(llm.provider.capability)
            calls.update(f.capability for f in llm.filter if f.capability)
    return calls


def agent_permissions(agent: LoadedAgent, settings: Settings) -> dict[str, list[str]]:
    """Publish and subscribe allow-lists for one agent."""
    p, name = settings.prefix, agent.agent.name
    declared = sorted({t.capability for t in agent.tools})
    publish = [f"{p}.spans.>", f"$KV.{settings.registry_bucket}.{name}.>"]
    publish += caller_publish(settings, dependencies(agent))
    subscribe = [f"{p}.cap.{cap}.{name}" for cap in declared]
    subscribe += [f"{p}.inst.*.{cap}" for cap in declared]
    subscribe += [
        f"{p}.cancel.*",
        f"_INBOX_{name}.>",
        "$SRV.*",
        f"$SRV.*.{name}",
        f"$SRV.*.{name}.*",
    ]
    return {"publish": publish + registry_read(settings), "subscribe": subscribe}


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _user(
    user: str,
    password_var: str,
    publish: Sequence[str],
    subscribe: Sequence[str],
    responses: Responses | None,
) -> str:
    lines = [
        "    {",
        f'      user: "{user}", password: ${password_var}',
        "      permissions: {",
        f"        publish: {{ allow: [{_quoted(publish)}] }}",
        f"        subscribe: {{ allow: [{_quoted(subscribe)}] }}",
    ]
    if responses is not None:
        lines.append(
            f'        allow_responses: {{ max: {responses.max}, expires: "{responses.expires}" }}'
        )
    return "\n".join([*lines, "      }", "    }"])


def password_var(user: str) -> str:
    """The environment variable the config reads a user's password from."""
    return user.upper().replace("-", "_") + "_PASSWORD"


def _spans_read(settings: Settings) -> list[str]:
    spans = settings.spans_stream
    return [
        f"{JS_API}.CONSUMER.CREATE.{spans}",
        f"{JS_API}.CONSUMER.CREATE.{spans}.>",
        f"{JS_API}.CONSUMER.DELETE.{spans}.>",
        f"{JS_API}.STREAM.MSG.GET.{spans}",  # a trace lookup starts at its shard's last span
        f"$JS.FC.{spans}.>",
    ]


def server_config(
    agents: Sequence[LoadedAgent], settings: Settings, responses: Responses | None = None
) -> str:
    """A nats-server config: an admin, the CLI, a gateway, the collector and one user per
    agent.

    Passwords are read from the environment (``$FLIGHT_AGENT_PASSWORD`` ...) when the
    server starts, so the file holds no secret. Agents (and the gateway) must connect
    with ``NATSMESH_INBOX_PREFIX=_INBOX_<user>``.
    """
    responses = responses or Responses()
    p = settings.prefix
    spans = settings.spans_stream
    users = [
        _user("admin", "ADMIN_PASSWORD", [">"], [">"], None),
        _user(
            "cli",
            "CLI_PASSWORD",
            [
                *caller_publish(settings, None),
                f"{p}.spans.>",
                "$SRV.>",
                *registry_read(settings),
                *_spans_read(settings),
            ],
            ["_INBOX.>"],
            responses,
        ),
        _user(
            "gateway",
            "GATEWAY_PASSWORD",
            [
                *caller_publish(settings, None),
                f"{p}.spans.>",
                *registry_read(settings),
                # the dashboard it serves: the span stream, and each instance's $SRV.STATS
                f"{JS_API}.STREAM.INFO.{spans}",
                f"{JS_API}.CONSUMER.INFO.{spans}.>",
                *_spans_read(settings),
                "$SRV.STATS",
                "$SRV.STATS.>",
            ],
            ["_INBOX_gateway.>"],
            responses,
        ),
        _user(
            "collector",
            "COLLECTOR_PASSWORD",
            [
                f"{JS_API}.STREAM.INFO.{spans}",
                f"{JS_API}.CONSUMER.CREATE.{spans}.>",
                f"{JS_API}.CONSUMER.INFO.{spans}.>",
                f"{JS_API}.CONSUMER.MSG.NEXT.{spans}.{subjects.SPANS_CONSUMER}",
                f"$JS.ACK.{spans}.>",
                "$SRV.STATS",  # calls in flight and export counters for its metrics
                "$SRV.STATS.>",
            ],
            ["_INBOX.>"],
            None,
        ),
    ]
    for agent in sorted(agents, key=lambda a: a.agent.name):
        perms = agent_permissions(agent, settings)
        users.append(
            _user(
                agent.agent.name,
                password_var(agent.agent.name),
                perms["publish"],
                perms["subscribe"],
                responses,
            )
        )
    return "\n".join(
        [
            "# natsmesh: least-privilege users for the trip planner (made by `natsmesh permissions agents/`).",
            "# Passwords come from the environment when nats-server starts: no secret is in this file.",
            "# Agents and the gateway connect with NATS_USER=<user>, NATS_PASSWORD and",
            "# NATSMESH_INBOX_PREFIX=_INBOX_<user>. Run `natsmesh setup` as admin once.",
            "listen: 127.0.0.1:4222",
            "jetstream: enabled",
            f"# a frozen client is dropped after {PING_MAX} unanswered pings (within 15 s)",
            f'ping_interval: "{PING_INTERVAL}"',
            f"ping_max: {PING_MAX}",
            "authorization {",
            "  users: [",
            ",\n".join(users),
            "  ]",
            "}",
            "",
        ]
    )
