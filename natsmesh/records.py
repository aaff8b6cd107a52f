"""Registry records checked whole: bounds on writing, validation on reading."""

from __future__ import annotations

import math
import re

import msgspec

from natsmesh import wire
from natsmesh.dependency import parse_tags
from natsmesh.subjects import check_token
from natsmesh.versions import parse_constraint
from natsmesh.wire import AgentRecord

#: the largest registry value a writer may put and a reader accepts (the bucket refuses more)
MAX_RECORD_BYTES = 256 * 1024
#: the most tools one instance may advertise
MAX_TOOLS = 256
#: the longest version string, tag list or dependency list a record may carry
MAX_TEXT = 128
MAX_ITEMS = 64
KINDS = frozenset({"tool", "llm_provider"})
_VERSION = re.compile(r"^v?[0-9A-Za-z][0-9A-Za-z.+_-]*$")


class RecordError(ValueError):
    """A registry record that breaks a rule (too large, too many tools, a bad field)."""


def encode_for_registry(record: AgentRecord) -> bytes:
    """The record's registry value; raises :class:`RecordError` when it is out of bounds,
    with a message that says what to change (an agent refuses to start on it)."""
    if len(record.tools) > MAX_TOOLS:
        raise RecordError(
            f"agent {record.name!r} advertises {len(record.tools)} tools; the limit is "
            f"{MAX_TOOLS} per agent: split it into several agents"
        )
    check_record(record)
    data = wire.encode_record(record)
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(
            f"agent {record.name!r}: its registry record is {len(data) // 1024} KiB; the limit "
            f"is {MAX_RECORD_BYTES // 1024} KiB: shorten tool descriptions and schemas"
        )
    return data


def decode_from_registry(key: str, data: bytes) -> AgentRecord:
    """The record stored under ``key``; raises :class:`RecordError` unless the value is
    within bounds, decodes, passes :func:`check_record`, and names the key's own writer
    (key ``<name>.<instance_id>``: under the generated permissions only agent ``<name>``
    can write it)."""
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(
            f"{len(data) // 1024} KiB is over the {MAX_RECORD_BYTES // 1024} KiB limit"
        )
    try:
        record = wire.decode_record(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecordError(f"not a registry record ({exc})") from exc
    if key != f"{record.name}.{record.instance_id}":
        raise RecordError(f"it names {record.name!r}/{record.instance_id!r}, not its key's writer")
    check_record(record)
    return record


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RecordError(message)


def _token(value: str, what: str) -> None:
    try:
        check_token(value, what)
    except ValueError as exc:
        raise RecordError(str(exc)) from exc


def _version(value: str, what: str) -> None:
    _check(
        len(value) <= MAX_TEXT and bool(_VERSION.match(value)), f"{what} {value!r} is not a version"
    )


def check_record(record: AgentRecord) -> None:
    """Raise :class:`RecordError` naming the first field that breaks a rule."""
    _token(record.name, "agent name")
    _token(record.instance_id, "instance id")
    _version(record.version, "agent version")
    _check(record.protocol >= 1, f"protocol {record.protocol} is not a protocol version")
    _check(math.isfinite(record.started_at), "started_at is not a time")
    _check(len(record.tools) <= MAX_TOOLS, f"{len(record.tools)} tools (limit {MAX_TOOLS})")
    for tool in record.tools:
        where = f"tool {tool.name!r}"
        _token(tool.name, "tool name")
        _token(tool.capability, f"{where}: capability")
        _version(tool.version, f"{where}: version")
        _check(tool.kind in KINDS, f"{where}: kind {tool.kind!r} is not one of {sorted(KINDS)}")
        _check(len(tool.tags) <= MAX_ITEMS, f"{where}: more than {MAX_ITEMS} tags")
        for tag in tool.tags:
            _token(tag, f"{where}: tag")
        _check(len(tool.dependencies) <= MAX_ITEMS, f"{where}: more than {MAX_ITEMS} dependencies")
        for dep in tool.dependencies:
            _token(dep.capability, f"{where}: dependency capability")
            _check(
                all(t for t in dep.tags), f"{where}: dependency {dep.capability!r}: an empty tag"
            )
            try:
                parse_tags(dep.tags)
                if dep.version is not None:
                    _check(len(dep.version) <= MAX_TEXT, f"{where}: dependency version too long")
                    parse_constraint(dep.version)
            except ValueError as exc:
                raise RecordError(f"{where}: dependency {dep.capability!r}: {exc}") from exc
