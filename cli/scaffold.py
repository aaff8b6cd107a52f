"""``natsmesh scaffold``: a runnable agent skeleton."""

from __future__ import annotations

from pathlib import Path

import typer
from natsmesh_cli.options import settings as cli_settings
from natsmesh_cli.output import fail

TOOL_TEMPLATE = '''"""{name}: describe what this agent does."""

from __future__ import annotations

import natsmesh as mesh


@mesh.agent(name="{name}", version="1.0.0", description="{name}")
class Agent:
    pass


@mesh.tool(capability="{capability}", description="Say hello", tags=["example"])
async def {function}(name: str = "world") -> dict[str, str]:
    return {{"greeting": f"Hello, {{name}}!"}}


if __name__ == "__main__":
    mesh.run()
'''

LLM_TEMPLATE = '''"""{name}: a tool that asks the mesh's LLM."""

from __future__ import annotations

import natsmesh as mesh


class Question(mesh.MeshContextModel):
    topic: str


@mesh.agent(name="{name}", version="1.0.0", description="{name}")
class Agent:
    pass


@mesh.llm(
    system_prompt="You are a helpful assistant. Answer questions about {{{{ topic }}}} briefly.",
    context_param="ctx",
    provider={{"capability": "llm"}},
    filter=[],
)
@mesh.tool(capability="{capability}", description="Answer a question about a topic")
async def {function}(topic: str, question: str, ctx: Question = None, llm: mesh.LlmAgent = None) -> str:
    return await llm(question)


if __name__ == "__main__":
    mesh.run()
'''


def scaffold_command(
    name: str = typer.Option(..., "--name", "-n", help="Agent name, e.g. greeter-agent."),
    kind: str = typer.Option("tool", "--type", help="tool or llm."),
    directory: Path = typer.Option(Path("agents"), "--dir", help="Folder to create the agent in."),
) -> None:
    """Create <dir>/<name>/main.py, a runnable agent."""
    from natsmesh.subjects import check_token

    try:
        check_token(name, "agent name")
    except ValueError as exc:
        fail(str(exc), 2)
    if kind not in ("tool", "llm"):
        fail("--type is 'tool' or 'llm'", 2)
    function = name.replace("-", "_").removesuffix("_agent") or "hello"
    folder = directory / name.replace("-", "_")
    target = folder / "main.py"
    if target.exists():
        fail(f"{target} exists; not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    template = TOOL_TEMPLATE if kind == "tool" else LLM_TEMPLATE
    target.write_text(template.format(name=name, capability=function, function=function))
    print(f"created {target}")
    print(f"run it:  natsmesh start {target}")
    print(
        f"call it: natsmesh call {function} '{{}}'"
        if kind == "tool"
        else f'call it: natsmesh call {function} \'{{"topic": "NATS", "question": "What is it?"}}\''
    )


def permissions_command(
    paths: list[Path] = typer.Argument(..., help="Agent files, or folders of agents."),
    max_responses: int = typer.Option(
        10_000,
        "--max-responses",
        help="Messages a worker may send to one call's reply subject (chunks of the longest stream, plus a few).",
    ),
    response_expiry: str = typer.Option(
        "5m",
        "--response-expiry",
        help="How long after a call its worker may still answer (longer than the longest call).",
    ),
) -> None:
    """Print a nats-server config with least-privilege users for these agents."""
    import re

    from natsmesh.loader import find_agent_files, load_file
    from natsmesh.ops.permissions import Responses, server_config

    if max_responses < 1:
        fail("--max-responses is at least 1", 2)
    if not re.fullmatch(r"[0-9]+(ms|s|m|h)", response_expiry):
        fail("--response-expiry is a duration such as 90s, 5m or 1h", 2)
    try:
        agents = [load_file(f) for p in paths for f in find_agent_files(p)]
    except Exception as exc:
        fail(str(exc))
    responses = Responses(max_responses, response_expiry)
    print(server_config(agents, cli_settings(), responses), end="")


def setup_command() -> None:
    """Create the registry bucket and the span stream (run once, as admin, on a secure server)."""
    import asyncio

    from natsmesh.errors import MeshError
    from natsmesh.ops.setup import setup

    try:
        for line in asyncio.run(setup(cli_settings())):
            print(line)
    except MeshError as exc:
        fail(exc.message)
