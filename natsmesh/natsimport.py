"""``import nats`` without aiohttp: nats-py's websocket transport imports it only for ws:// URLs.

nats-py imports aiohttp whenever it is installed (litellm installs it), which costs
0.1-0.6 s of start-up for a transport natsmesh uses only with ``ws://`` and ``wss://``
URLs. :func:`install` (called by ``natsmesh/__init__``, so before any nats import) hides
aiohttp from that one module while it loads; :func:`websocket_support` hands it over
when a websocket URL is used. Every other ``import aiohttp`` in the process is unaffected.
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_TRANSPORT = "nats.aio.transport"


class _Hook:
    """A meta path finder that acts once, on nats-py's transport module."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != _TRANSPORT:
            return None
        uninstall()
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None and "aiohttp" not in sys.modules:
            spec.loader = _WithoutAiohttp(spec.loader)  # type: ignore[assignment]
        return spec


class _WithoutAiohttp:
    """Runs a module with ``import aiohttp`` failing, then lets aiohttp be imported again."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]  # "import aiohttp" -> ImportError
        try:
            self._loader.exec_module(module)
        finally:
            if sys.modules.get("aiohttp", 0) is None:
                del sys.modules["aiohttp"]


def install() -> None:
    """Keep aiohttp out of nats-py's first import (a no-op once nats is loaded)."""
    if _TRANSPORT not in sys.modules and _Hook not in sys.meta_path:
        sys.meta_path.insert(0, _Hook)


def uninstall() -> None:
    if _Hook in sys.meta_path:
        sys.meta_path.remove(_Hook)


def websocket_support() -> None:
    """Give nats-py's websocket transport the aiohttp it was loaded without."""
    from nats.aio import transport

    if transport.aiohttp is None:
        try:
            import aiohttp
            import multidict
        except ImportError:
            return  # nats-py says how to install it
        transport.aiohttp = aiohttp
        transport.multidict = multidict  # type: ignore[attr-defined]


def is_websocket(urls: Sequence[str]) -> bool:
    """True when any of ``urls`` is a ``ws://`` or ``wss://`` URL."""
    return any(u.strip().lower().startswith(("ws://", "wss://")) for u in urls)
