"""Decorators record metadata and refuse bad use at import time."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import natsmesh as mesh
from natsmesh.loader import find_agent_files, load_file
from natsmesh.specs import tool_spec


def test_tool_records_a_spec_and_returns_the_function() -> None:
    async def search(city: str, limit: int = 3, prefs: mesh.MeshTool | None = None) -> dict:
        return {}

    decorated = mesh.tool(capability="search", tags=["a"], dependencies=["prefs"])(search)
    assert decorated is search
    spec = tool_spec(search)
    assert spec is not None
    assert spec.capability == "search"
    assert spec.signature.dependency_params == ("prefs",)
    schema = spec.signature.input_schema
    assert set(schema["properties"]) == {"city", "limit"}, "injected parameters are not arguments"
    assert schema["required"] == ["city"]


def test_capability_defaults_to_the_function_name() -> None:
    @mesh.tool()
    def lookup(key: str) -> str:
        return key

    spec = tool_spec(lookup)
    assert spec is not None and spec.capability == "lookup" and not spec.signature.is_async


@pytest.mark.parametrize("name", ["has space", "dots.bad", "star*", "", "ünï"])
def test_unsafe_capability_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        mesh.tool(capability=name)


def test_unsafe_agent_name_is_refused() -> None:
    with pytest.raises(ValueError, match="agent name"):
        mesh.agent(name="my agent")


def test_dependency_count_must_match_proxies() -> None:
    async def f(x: str) -> str:
        return x

    with pytest.raises(TypeError, match="declares 1 dependencies but has 0 MeshTool"):
        mesh.tool(dependencies=["other"])(f)


def test_bad_dependency_spec() -> None:
    with pytest.raises(ValueError, match="unknown: tag"):
        mesh.tool(dependencies=[{"capability": "x", "tag": ["a"]}])
    with pytest.raises(ValueError, match="version constraint"):
        mesh.tool(dependencies=[{"capability": "x", "version": "latest"}])


def test_own_tags_are_plain() -> None:
    with pytest.raises(ValueError, match="plain names"):
        mesh.tool(tags=["+fast"])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "main.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_file_without_agent_says_what_to_add(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        import natsmesh as mesh

        @mesh.tool()
        async def hello() -> str:
            return "hi"
        """,
    )
    with pytest.raises(ValueError, match=r"no @mesh.agent class; add one"):
        load_file(path)


def test_loads_agent_and_tools(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        import natsmesh as mesh

        @mesh.agent(name="hello-agent", version="2.0.0")
        class Hello:
            pass

        @mesh.tool(capability="hello")
        async def hello(name: str = "x") -> str:
            return name
        """,
    )
    loaded = load_file(path)
    assert loaded.agent.name == "hello-agent"
    assert [t.name for t in loaded.tools] == ["hello"]


def test_agent_folder_discovery() -> None:
    root = Path(__file__).resolve().parents[2] / "agents"
    names = {p.parent.name for p in find_agent_files(root)}
    assert {
        "flight_agent",
        "hotel_agent",
        "weather_agent",
        "poi_agent",
        "user_prefs_agent",
    } <= names
