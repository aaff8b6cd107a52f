"""Every NATS name natsmesh uses: subjects, queue groups, buckets, streams and keys."""

from __future__ import annotations

import re

DEFAULT_PREFIX = "mesh"
DEFAULT_REGISTRY_BUCKET = "natsmesh-registry"
DEFAULT_SPANS_STREAM = "NATSMESH_SPANS"
SPANS_CONSUMER = "natsmesh-collector"
SERVICE_VERBS = ("PING", "INFO", "STATS")

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is a NATS-safe token, else raise ``ValueError`` saying what to fix."""
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: use only letters, digits, '_' and '-' "
            "(it becomes part of a NATS subject)"
        )
    return value


def cap_subject(capability: str, agent: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The load-balanced subject every instance of ``agent`` serves ``capability`` on."""
    return f"{prefix}.cap.{capability}.{agent}"


def queue_group(agent: str) -> str:
    """The queue group of an agent's instances: one request reaches one instance."""
    return agent


def inst_subject(instance_id: str, capability: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject only one instance serves, for pinned calls."""
    return f"{prefix}.inst.{instance_id}.{capability}"


def cancel_subject(instance_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Where callers ask one instance to cancel a call (the body is the call's reply subject)."""
    return f"{prefix}.cancel.{instance_id}"


def spans_subject(trace_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Where the finished spans of ``trace_id`` are published: one of 16 shard subjects,
    ``<prefix>.spans.<the trace ID's first hex digit>``, each message a batch of spans."""
    return f"{prefix}.spans.{trace_id[:1].lower() or '0'}"


def trace_spans_subject(trace_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Where publishers before span batches put each span of ``trace_id`` (still read)."""
    return f"{prefix}.spans.{trace_id}"


def spans_wildcard(prefix: str = DEFAULT_PREFIX) -> str:
    """The subjects of the span stream."""
    return f"{prefix}.spans.>"


def registry_key(agent: str, instance_id: str) -> str:
    """The registry key of one running instance."""
    return f"{agent}.{instance_id}"


def service_subjects(verb: str, name: str, instance_id: str) -> tuple[str, str, str]:
    """The three ADR-32 control subjects an instance answers for ``verb``."""
    return (f"$SRV.{verb}", f"$SRV.{verb}.{name}", f"$SRV.{verb}.{name}.{instance_id}")
