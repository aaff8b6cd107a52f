"""Versions and version constraints: ``"1.2.3"``, ``">=1.0,<2"``, ``"~=1.4"``, ``"^1.2"``."""

from __future__ import annotations

import re

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
