"""The public API is what natsmesh/__init__.py exports, sorted and complete."""

from __future__ import annotations

import subprocess
import sys

import natsmesh


def test_all_is_sorted_and_resolves() -> None:
    assert natsmesh.__all__ == sorted(natsmesh.__all__)
    for name in natsmesh.__all__:
        assert getattr(natsmesh, name) is not None


def test_errors_subclass_builtins() -> None:
    assert issubclass(natsmesh.ToolTimeout, TimeoutError)
    assert issubclass(natsmesh.NoProvider, LookupError)
    assert issubclass(natsmesh.InvalidArguments, ValueError)
    for name in ("InvalidArguments", "NoProvider", "ToolTimeout", "Unavailable", "ToolError"):
        assert issubclass(getattr(natsmesh, name), natsmesh.MeshError)


def test_error_round_trip() -> None:
    from natsmesh.errors import from_wire

    error = natsmesh.InvalidArguments("bad", {"errors": [{"field": "x", "error": "y"}]})
    rebuilt = from_wire(error.to_wire())
    assert type(rebuilt) is natsmesh.InvalidArguments
    assert rebuilt.details == error.details
    assert type(from_wire({"type": "from_the_future", "message": "m"})) is natsmesh.MeshError


def test_cli_call_path_stays_light() -> None:
    code = (
        "import sys, natsmesh_cli.app, natsmesh.session, natsmesh.client;"
        "heavy = [m for m in ('litellm', 'opentelemetry.exporter', 'pydantic', 'jinja2') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
