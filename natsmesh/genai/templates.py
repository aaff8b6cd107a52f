"""System prompts: inline text or ``file://`` Jinja templates, rendered strictly."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

from natsmesh.errors import ToolError

FILE_PREFIX = "file://"


@functools.lru_cache(maxsize=64)
def _environment(base_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(base_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # prompts are plain text, not HTML
        keep_trailing_newline=True,
    )


@functools.lru_cache(maxsize=256)
def _template(base_dir: Path, source: str) -> jinja2.Template:
    env = _environment(base_dir)
    if source.startswith(FILE_PREFIX):
        return env.get_template(source[len(FILE_PREFIX) :])
    return env.from_string(source)


def render(source: str, base_dir: Path, variables: dict[str, Any]) -> str:
    """Render a system prompt; a missing file or variable is a :class:`ToolError` naming it."""
    where = source if source.startswith(FILE_PREFIX) else "the inline system prompt"
    try:
        return _template(base_dir, source).render(**variables).strip()
    except jinja2.TemplateNotFound as exc:
        raise ToolError(f"prompt template not found: {base_dir / str(exc.name)}") from None
    except jinja2.UndefinedError as exc:
        raise ToolError(
            f"{where} uses a variable the context does not have: {exc.message}",
            {"variables": sorted(variables)},
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise ToolError(
            f"{where}: template syntax error at line {exc.lineno}: {exc.message}"
        ) from None
