"""Provider selection as a pure function."""

from __future__ import annotations

import random

import pytest

from natsmesh.selection import parse_constraint, satisfies, select, tags_match
from natsmesh.specs import DependencySpec, dependency
from natsmesh.wire import AgentRecord, ToolRecord


def record(
    name: str, tags: tuple[str, ...], version: str = "1.0.0", instance: str = ""
) -> AgentRecord:
    return AgentRecord(
        name=name,
        instance_id=instance or f"{name}-1",
        version=version,
        description="",
        host="h",
        pid=1,
        started_at=0,
        tools=(ToolRecord(name="t", capability="llm", tags=tags, version=version),),
    )


CLAUDE = record("claude", ("claude", "fast"))
GPT = record("gpt", ("openai", "gpt"))
BETA = record("beta", ("claude", "beta"), "2.0.0")


def names(dep: DependencySpec, records=(CLAUDE, GPT, BETA)) -> list[str]:
    return [c.agent for c in select(records, dep, random.Random(1))]


def test_required_tag_filters() -> None:
    assert sorted(names(dependency({"capability": "llm", "tags": ["claude"]}))) == [
        "beta",
        "claude",
    ]


def test_excluded_tag_drops() -> None:
    assert sorted(names(dependency({"capability": "llm", "tags": ["-beta"]}))) == ["claude", "gpt"]


def test_preferred_tag_ranks_first_without_excluding() -> None:
    ranked = names(dependency({"capability": "llm", "tags": ["+openai"]}))
    assert ranked[0] == "gpt"
    assert sorted(ranked) == ["beta", "claude", "gpt"]


def test_more_preferred_tags_score_higher() -> None:
    ranked = names(dependency({"capability": "llm", "tags": ["+claude", "+fast"]}))
    assert ranked[:2] == ["claude", "beta"]


def test_version_constraint() -> None:
    assert names(dependency({"capability": "llm", "version": ">=2"})) == ["beta"]
    assert sorted(names(dependency({"capability": "llm", "version": "<2.0"}))) == ["claude", "gpt"]


def test_unknown_capability_has_no_candidates() -> None:
    assert names(DependencySpec("nothing")) == []


def test_ties_are_shared() -> None:
    seen = {select((CLAUDE, GPT), DependencySpec("llm"))[0].agent for _ in range(50)}
    assert seen == {"claude", "gpt"}


def test_instances_that_differ_are_pinned() -> None:
    old = record("svc", ("a",), "1.0.0", "svc-old")
    new = record("svc", ("a",), "2.0.0", "svc-new")
    [candidate] = select((old, new), dependency({"capability": "llm", "version": ">=2"}))
    assert candidate.instance_id == "svc-new"
    [both] = select((old, new), DependencySpec("llm"))
    assert both.instance_id is None


@pytest.mark.parametrize(
    ("version", "constraint", "ok"),
    [
        ("1.2.3", ">=1.0", True),
        ("1.2.3", ">=1.0,<1.2", False),
        ("1.2.3", "==1.2.3", True),
        ("1.2", "==1.2.0", True),
        ("1.4.2", "~=1.4", True),
        ("2.0.0", "~=1.4", False),
        ("1.9.0", "^1.2", True),
        ("2.0.0", "^1.2", False),
        ("1.0.0-beta", ">=1.0", True),
        ("3.0.0", "!=3.0.0", False),
    ],
)
def test_satisfies(version: str, constraint: str, ok: bool) -> None:
    assert satisfies(version, constraint) is ok


def test_bad_constraint_is_refused() -> None:
    with pytest.raises(ValueError, match="version constraint"):
        parse_constraint(">=one")


def test_tags_match_for_the_worker_check() -> None:
    assert tags_match({"claude"}, ("claude", "+fast", "-beta"))
    assert not tags_match({"claude", "beta"}, ("-beta",))
    assert not tags_match({"gpt"}, ("claude",))
