"""A condition on state: tasks wait until a predicate holds, re-checked each time it may have changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Condition:
    """Call :meth:`notify` after a change; :meth:`wait_until` re-checks its predicate then."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Return once ``predicate()`` holds; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._event.clear()
                await self._event.wait()
