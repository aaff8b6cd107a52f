"""Provider selection: a pure function from a registry snapshot and a dependency to candidates."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterable, Sequence

from natsmesh.specs import DependencySpec
from natsmesh.wire import AgentRecord, ToolRecord

_CONSTRAINT = re.compile(r"^\s*(>=|<=|==|!=|~=|>|<|\^)?\s*v?([0-9]+(?:\.[0-9]+)*)\s*$")

Version = tuple[int, ...]
Constraint = tuple[tuple[str, Version], ...]


def parse_version(text: str) -> Version:
    """``"1.2.3"`` → ``(1, 2, 3)``; a pre-release or build suffix is ignored."""
    parts = []
    for piece in text.strip().lstrip("v").split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts) or (0,)


def parse_constraint(text: str) -> Constraint:
    """Parse ``">=1.0,<2"``; a bare version means ``==``. Raises ``ValueError`` if malformed."""
    out = []
    for clause in text.split(","):
        m = _CONSTRAINT.match(clause)
        if not m:
            raise ValueError(
                f"version constraint {text!r}: use clauses like '>=1.0', '<2', '==1.2.3', '~=1.4'"
            )
        out.append((m.group(1) or "==", parse_version(m.group(2))))
    return tuple(out)


def _pad(a: Version, n: int) -> Version:
    return a + (0,) * (n - len(a))


def _holds(version: Version, op: str, bound: Version) -> bool:
    n = max(len(version), len(bound))
    v, b = _pad(version, n), _pad(bound, n)
    if op == "~=":  # compatible release: >= bound and same prefix but the last part
        prefix = bound[:-1] if len(bound) > 1 else bound
        return v >= b and version[: len(prefix)] == prefix
    if op == "^":  # same major
        return v >= b and version[:1] == bound[:1]
    return {
        ">=": v >= b,
        "<=": v <= b,
        ">": v > b,
        "<": v < b,
        "==": v == b,
        "!=": v != b,
    }[op]


def satisfies(version: str, constraint: str | None) -> bool:
    """True when ``version`` meets ``constraint`` (always true without one)."""
    if not constraint:
        return True
    v = parse_version(version)
    return all(_holds(v, op, bound) for op, bound in parse_constraint(constraint))


def tags_match(own: Iterable[str], selector: Sequence[str]) -> bool:
    """True when a provider with tags ``own`` may take a call with this selector."""
    have = set(own)
    for tag in selector:
        if tag.startswith("-"):
            if tag[1:] in have:
                return False
        elif not tag.startswith("+") and tag not in have:
            return False
    return True


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One provider to try: an agent's queue subject, or one instance when it is pinned."""

    agent: str
    tool: ToolRecord
    score: int
    #: set when only some instances of the agent match: call this instance directly
    instance_id: str | None = None
    #: the call protocol every matching instance speaks (the lowest of them)
    protocol: int = 1


def _tool_for(record: AgentRecord, capability: str) -> ToolRecord | None:
    for tool in record.tools:
        if tool.capability == capability:
            return tool
    return None


def _fits(tool: ToolRecord, dep: DependencySpec) -> bool:
    return tags_match(tool.tags, dep.tags) and satisfies(tool.version, dep.version)


def select(
    records: Iterable[AgentRecord],
    dep: DependencySpec,
    rng: random.Random | None = None,
) -> list[Candidate]:
    """Rank the providers of ``dep.capability``: best first, ties in random order.

    Candidates that miss a required tag, carry an excluded one or miss the version
    constraint drop out; the score is the number of preferred tags a provider has.
    """
    by_agent: dict[str, list[tuple[AgentRecord, ToolRecord]]] = {}
    for record in records:
        tool = _tool_for(record, dep.capability)
        if tool is not None:
            by_agent.setdefault(record.name, []).append((record, tool))
    preferred = dep.preferred
    candidates: list[Candidate] = []
    for agent, instances in by_agent.items():
        fitting = [(r, t) for r, t in instances if _fits(t, dep)]
        if not fitting:
            continue
        if len(fitting) == len(instances):
            tool = fitting[0][1]
            lowest = min(r.protocol for r, _ in fitting)
            score = sum(t in tool.tags for t in preferred)
            candidates.append(Candidate(agent, tool, score, protocol=lowest))
        else:
            for record, tool in fitting:
                score = sum(t in tool.tags for t in preferred)
                candidates.append(
                    Candidate(agent, tool, score, record.instance_id, protocol=record.protocol)
                )
    (rng or random).shuffle(candidates)
    candidates.sort(key=lambda c: -c.score)
    return candidates
