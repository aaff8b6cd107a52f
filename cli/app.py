"""The ``natsmesh`` typer app; each command lives in its own module and imports lazily."""

from __future__ import annotations

import os

import typer
from natsmesh_cli.mesh_commands import call_command, list_command, status_command
from natsmesh_cli.process_commands import logs_command, start_command, stop_command
from natsmesh_cli.scaffold import permissions_command, scaffold_command
from natsmesh_cli.trace_commands import collector_command, trace_command

app = typer.Typer(
    name="natsmesh",
    help="AI agents as plain Python functions, run as a mesh over NATS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("start")(start_command)
app.command("stop")(stop_command)
app.command("list")(list_command)
app.command("call")(call_command)
app.command("trace")(trace_command)
app.command("logs")(logs_command)
app.command("status")(status_command)
app.command("scaffold")(scaffold_command)
app.command("collector")(collector_command)
app.command("permissions")(permissions_command)


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    app()


if __name__ == "__main__":
    main()
