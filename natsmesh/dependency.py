"""What a caller asks for: a capability, tag rules and a version constraint.

Apart from the tool and agent specs (:mod:`natsmesh.specs`, which re-exports these) so
that calling, which needs only this, does not pay for creating those dataclasses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from natsmesh.subjects import check_token


@dataclasses.dataclass(frozen=True)
class DependencySpec:
    """A capability plus tag rules (``tag`` required, ``+tag`` preferred, ``-tag`` excluded)
    and an optional version constraint such as ``">=1.0,<2"``."""

    capability: str
    tags: tuple[str, ...] = ()
    version: str | None = None

    @property
    def preferred(self) -> tuple[str, ...]:
        return tuple(t[1:] for t in self.tags if t[0] == "+")

    @property
    def header(self) -> str:
        """The selector as written, for the ``Mesh-Tags`` header."""
        return ",".join(self.tags)


def parse_tags(tags: str | Any) -> tuple[str, ...]:
    """Tags from a list or a comma-separated string; each must be a safe token after its sign."""
    items = tags.split(",") if isinstance(tags, str) else list(tags or ())
    out = []
    for raw in items:
        tag = str(raw).strip()
        if not tag:
            continue
        check_token(tag[1:] if tag[0] in "+-" else tag, "tag")
        out.append(tag)
    return tuple(out)


def dependency(value: str | Mapping[str, Any] | DependencySpec) -> DependencySpec:
    """Parse ``"capability"`` or ``{"capability": ..., "tags": [...], "version": ...}``."""
    if isinstance(value, DependencySpec):
        return value
    if isinstance(value, str):
        return DependencySpec(check_token(value, "capability"))
    if isinstance(value, Mapping):
        unknown = set(value) - {"capability", "tags", "version"}
        if unknown or "capability" not in value:
            raise ValueError(
                f"dependency {dict(value)!r}: expected keys capability, tags, version"
                + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
            )
        version = value.get("version")
        if version is not None:
            from natsmesh.versions import parse_constraint

            parse_constraint(str(version))
        return DependencySpec(
            check_token(str(value["capability"]), "capability"),
            parse_tags(value.get("tags", ())),
            None if version is None else str(version),
        )
    raise TypeError(f"a dependency is a capability name or a dict, not {type(value).__name__}")
