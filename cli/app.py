"""The ``natsmesh`` typer app; each command lives in its own module and imports lazily.

The console script is :func:`natsmesh_cli.fastcall.main`: it makes ``natsmesh call``
itself, without importing typer, and hands every other command line to this app.
"""

from __future__ import annotations

import typer
from natsmesh_cli.dashboard_commands import dashboard_command
from natsmesh_cli.gateway_commands import gateway_command
from natsmesh_cli.mcp_commands import mcp_command
from natsmesh_cli.mesh_commands import call_command, list_command, status_command
from natsmesh_cli.options import set_connection
from natsmesh_cli.process_commands import logs_command, start_command, stop_command
from natsmesh_cli.scaffold import permissions_command, scaffold_command, setup_command
from natsmesh_cli.trace_commands import collector_command, trace_command

app = typer.Typer(
    name="natsmesh",
    help="AI agents as plain Python functions, run as a mesh over NATS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def connection(
    server: str = typer.Option(None, "--server", "-s", help="NATS URL(s); default $NATS_URL."),
    user: str = typer.Option(None, "--user", help="NATS user ($NATS_USER)."),
    password: str = typer.Option(None, "--password", help="NATS password ($NATS_PASSWORD)."),
    token: str = typer.Option(None, "--token", help="NATS token ($NATS_TOKEN)."),
    creds: str = typer.Option(None, "--creds", help="Credentials file ($NATS_CREDS)."),
    nkey: str = typer.Option(None, "--nkey", help="NKey seed file ($NATS_NKEY)."),
    tls_ca: str = typer.Option(None, "--tls-ca", help="TLS CA bundle ($NATS_CA)."),
    tls_cert: str = typer.Option(None, "--tls-cert", help="TLS client certificate ($NATS_CERT)."),
    tls_key: str = typer.Option(None, "--tls-key", help="TLS client key ($NATS_KEY)."),
) -> None:
    """Connection options apply to every command (and to the agents `start` runs)."""
    set_connection(**locals())


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
app.command("setup")(setup_command)
app.command("dashboard")(dashboard_command)
app.command("gateway")(gateway_command)
app.command("mcp")(mcp_command)


def main() -> None:
    """Run the typer app (``natsmesh --help``, every command, every usage error)."""
    app()


if __name__ == "__main__":
    main()
