"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from natsmesh.loader import LoadedAgent
from natsmesh.specs import agent_spec, tool_spec

TEST_AGENTS = Path(__file__).resolve().parent / "agents"


def loaded(agent_cls: Any, *tools: Any) -> LoadedAgent:
    """A LoadedAgent from a decorated class and decorated functions."""
    spec = agent_spec(agent_cls)
    assert spec is not None
    return LoadedAgent(spec, tuple(tool_spec(t) for t in tools))  # type: ignore[misc]


def provider(name: str, tags: list[str], version: str = "1.0.0") -> LoadedAgent:
    import importlib.util
    import sys

    if "natsmesh_test_providers" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "natsmesh_test_providers", TEST_AGENTS / "providers.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["natsmesh_test_providers"] = module
        spec.loader.exec_module(module)
    return loaded(*sys.modules["natsmesh_test_providers"].provider(name, tags, version))


async def eventually(predicate: Any, timeout: float, what: str = "condition") -> None:
    """Wait until ``predicate()`` (sync or async) holds, checking every 20 ms; fail after
    ``timeout`` seconds. A bounded wait on a condition, not a sleep."""
    import asyncio
    import inspect

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class SpanTap:
    """The spans of one trace as they are published (core NATS, the trace's shard subject):
    ``tap = await SpanTap.open(nc, prefix, trace_id)``, then ``await tap.next(timeout)``."""

    def __init__(self, sub: Any, trace_id: str) -> None:
        self._sub = sub
        self._trace_id = trace_id
        self._ready: list[Any] = []

    @classmethod
    async def open(cls, nc: Any, prefix: str, trace_id: str) -> SpanTap:
        from natsmesh import subjects

        sub = await nc.subscribe(subjects.spans_subject(trace_id, prefix))
        await nc.flush()
        return cls(sub, trace_id)

    async def next(self, timeout: float = 5.0) -> Any:
        """The next span of the trace; ``TimeoutError`` when none comes in time."""
        import asyncio

        from natsmesh import wire

        async with asyncio.timeout(timeout):
            while not self._ready:
                msg = await self._sub.next_msg(timeout=None)
                spans, _ = wire.decode_spans(msg.data)
                self._ready.extend(s for s in spans if s.trace_id == self._trace_id)
        return self._ready.pop(0)

    async def take(self, count: int, timeout: float = 5.0) -> list[Any]:
        """The next ``count`` spans of the trace."""
        return [await self.next(timeout) for _ in range(count)]

    async def close(self) -> None:
        await self._sub.unsubscribe()
