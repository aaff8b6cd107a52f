"""Provider selection: a pure function from a registry snapshot and a dependency to candidates."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

from natsmesh.dependency import DependencySpec
from natsmesh.versions import parse_constraint, parse_version, satisfies
from natsmesh.wire import AgentRecord, ToolRecord

__all__ = ["Candidate", "parse_constraint", "parse_version", "satisfies", "select", "tags_match"]


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
