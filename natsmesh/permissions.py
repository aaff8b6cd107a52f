"""Least-privilege NATS permissions for agents, written as a nats-server config.

Each agent may subscribe only to its own ``mesh.cap.*.<agent>`` and to the instance
subjects of its own capabilities, publish only to the capabilities it depends on (and
the spans), write only its own registry keys, and read the registry through the
JetStream API calls a watcher needs. Replies go out through ``allow_responses``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from natsmesh import subjects
from natsmesh.config import Settings
from natsmesh.loader import LoadedAgent

JS_API = "$JS.API"


def _registry_read(settings: Settings) -> list[str]:
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


def agent_permissions(agent: LoadedAgent, settings: Settings) -> dict[str, list[str]]:
    """Publish and subscribe allow-lists for one agent."""
    p, name = settings.prefix, agent.agent.name
    calls: set[str] = set()
    for tool in agent.tools:
        calls.update(d.capability for d in tool.dependencies)
        llm = getattr(tool.func, "__natsmesh_llm__", None)
        if llm is not None:
            calls.add(llm.provider.capability)
            calls.update(f.capability for f in llm.filter if f.capability)
    publish = [f"{p}.spans.>", f"$KV.{settings.registry_bucket}.{name}.>", "$SRV.PING.>"]
    for cap in sorted(calls):
        publish += [f"{p}.cap.{cap}.*", f"{p}.inst.*.{cap}"]
    subscribe = [f"{p}.cap.*.{name}", *(f"{p}.inst.*.{t.capability}" for t in agent.tools)]
    subscribe += [f"_INBOX_{name}.>", "$SRV.*", f"$SRV.*.{name}", f"$SRV.*.{name}.*"]
    return {"publish": publish + _registry_read(settings), "subscribe": subscribe}


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _user(
    user: str, password_var: str, publish: Sequence[str], subscribe: Sequence[str], responses: bool
) -> str:
    lines = [
        "    {",
        f'      user: "{user}", password: ${password_var}',
        "      permissions: {",
        f"        publish: {{ allow: [{_quoted(publish)}] }}",
        f"        subscribe: {{ allow: [{_quoted(subscribe)}] }}",
    ]
    if responses:
        lines.append("        allow_responses: true")
    return "\n".join([*lines, "      }", "    }"])


def password_var(user: str) -> str:
    """The environment variable the config reads a user's password from."""
    return user.upper().replace("-", "_") + "_PASSWORD"


def server_config(agents: Sequence[LoadedAgent], settings: Settings) -> str:
    """A nats-server config: an admin, the CLI, the collector and one user per agent.

    Passwords are read from the environment (``$FLIGHT_AGENT_PASSWORD`` ...) when the
    server starts, so the file holds no secret. Agents must connect with
    ``NATSMESH_INBOX_PREFIX=_INBOX_<agent>``.
    """
    p = settings.prefix
    spans = settings.spans_stream
    users = [
        _user("admin", "ADMIN_PASSWORD", [">"], [">"], False),
        _user(
            "cli",
            "CLI_PASSWORD",
            [
                f"{p}.cap.>",
                f"{p}.inst.>",
                f"{p}.spans.>",
                "$SRV.>",
                *_registry_read(settings),
                f"{JS_API}.CONSUMER.CREATE.{spans}",
                f"{JS_API}.CONSUMER.CREATE.{spans}.>",
                f"{JS_API}.CONSUMER.DELETE.{spans}.>",
                f"$JS.FC.{spans}.>",
            ],
            ["_INBOX.>"],
            False,
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
            ],
            ["_INBOX.>"],
            False,
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
                True,
            )
        )
    return "\n".join(
        [
            "# natsmesh: least-privilege users for the trip planner (made by `natsmesh permissions agents/`).",
            "# Passwords come from the environment when nats-server starts: no secret is in this file.",
            "# Agents connect with NATS_USER=<agent>, NATS_PASSWORD and NATSMESH_INBOX_PREFIX=_INBOX_<agent>.",
            "listen: 127.0.0.1:4222",
            "jetstream: enabled",
            "authorization {",
            "  users: [",
            ",\n".join(users),
            "  ]",
            "}",
            "",
        ]
    )
