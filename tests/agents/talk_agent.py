"""A test agent for the call protocol: streams, slow tools that report their cancellation.

Cancellation is reported by writing ``cancelled`` into ``marker`` (a file path), so that
tests see it from another process; in-process tests read ``EVENTS``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import natsmesh as mesh

#: in-process observations: name -> event (started, cancelled), and the producer's progress
EVENTS: dict[str, asyncio.Event] = {}
PRODUCED: dict[str, int] = {}


def _event(name: str) -> asyncio.Event:
    return EVENTS.setdefault(name, asyncio.Event())


def _mark(marker: str, what: str) -> None:
    _event(f"{marker}:{what}").set()
    if marker and os.sep in marker:
        with Path(marker).open("a") as out:
            out.write(f"{what} {os.getpid()}\n")


@mesh.agent(name="talk-agent")
class TalkAgent:
    pass


@mesh.tool(capability="count", idempotent=True)
async def count(n: int, delay: float = 0.0, key: str = "") -> AsyncIterator[int]:
    """Stream the numbers 0 .. n-1."""
    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        PRODUCED[key] = i + 1
        yield i


@mesh.tool(capability="words")
async def words(text: str) -> AsyncIterator[str]:
    """Stream the words of ``text`` (with their spaces): the collected result is the text."""
    for i, word in enumerate(text.split(" ")):
        yield word if i == 0 else " " + word


@mesh.tool(capability="sleepy")
async def sleepy(seconds: float, marker: str = "") -> str:
    """Sleep; report being started and being cancelled."""
    _mark(marker, "started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _mark(marker, "cancelled")
        raise
    return "slept"


@mesh.tool(capability="quick")
async def quick(x: int = 0) -> int:
    return x + 1


if __name__ == "__main__":
    mesh.run()


@mesh.tool(capability="login")
async def login(user: str, password: str, note: str = "") -> dict[str, str]:
    """Echo the user; the password must never reach a span."""
    return {"user": user, "token": f"tok-{password[::-1]}", "note": note}


@mesh.tool(capability="fails")
async def fails(reason: str = "boom") -> None:
    raise RuntimeError(reason)


@mesh.tool(capability="inner_span")
async def inner_span() -> str:
    """Make a span with the OpenTelemetry API: it must nest under the SERVER span."""
    from opentelemetry import trace

    with trace.get_tracer("talk").start_as_current_span("lookup") as span:
        span.set_attribute("talk.step", 1)
    return "done"


@mesh.tool(capability="capped", timeout=0.2)
async def capped(seconds: float = 5.0) -> str:
    await asyncio.sleep(seconds)
    return "too late"
