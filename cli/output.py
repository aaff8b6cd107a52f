"""One way to print: a table, or JSON with ``--json``; and one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def render(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], as_json: bool
) -> None:
    """Print ``rows`` as a table of ``(key, HEADER)`` columns, or as JSON."""
    if as_json:
        print_json(list(rows))
        return
    headers = [h for _, h in columns]
    cells = [[str(row.get(k, "")) for k, _ in columns] for row in rows]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line reason to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def info(message: str) -> None:
    print(message, file=sys.stderr)
