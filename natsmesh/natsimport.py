"""``import nats`` without what a process may never use: aiohttp, importlib.metadata, JetStream.

nats-py's first import pays for three things natsmesh often does not need:

- aiohttp (0.1-0.6 s when installed: litellm installs it), for the websocket transport
  that only ``ws://`` and ``wss://`` URLs use. :func:`install` (called by
  ``natsmesh/__init__``, so before any nats import) hides it from ``nats.aio.transport``
  while that module loads; :func:`websocket_support` hands it over for a websocket URL.
  Every other ``import aiohttp`` in the process is unaffected.
- ``importlib.metadata`` (about 7 ms), which ``nats.aio.client`` imports to read its own
  version for the CONNECT message. While that module loads it gets a stand-in whose
  ``version("nats-py")`` reads the installed ``nats_py-<version>.dist-info`` folder's
  name, and asks the real ``importlib.metadata`` only when it finds no single one.
- ``nats.js`` (JetStream, about 18 ms of dataclasses, enums and an email parser), which
  ``nats.aio.client`` imports at its top but uses only inside functions. After
  :func:`defer_jetstream` (``natsmesh call`` asks for it; the process must touch nats from
  one thread until JetStream is loaded) ``nats.js`` is loaded lazily: the module object
  exists, and its code runs on the first attribute anyone reads from it.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_TRANSPORT = "nats.aio.transport"
_CLIENT = "nats.aio.client"
_JETSTREAM = "nats.js"
_METADATA = "importlib.metadata"
_ACTS_ON = frozenset({_TRANSPORT, _CLIENT, _JETSTREAM})

#: modules the hook still has to act on (it leaves sys.meta_path when this is empty)
_pending: set[str] = set()


class _Hook:
    """A meta path finder that acts once on each of a few nats-py modules."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in _ACTS_ON:
            return None
        if name not in _pending:
            return None
        _pending.discard(name)
        if not _pending:
            uninstall()
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        if name == _TRANSPORT and "aiohttp" not in sys.modules:
            spec.loader = _Hiding(spec.loader, "aiohttp", None)  # type: ignore[assignment]
        elif name == _CLIENT and _METADATA not in sys.modules:
            spec.loader = _Hiding(spec.loader, _METADATA, _metadata_stand_in())  # type: ignore[assignment]
        elif name == _JETSTREAM:
            from importlib.util import LazyLoader

            spec.loader = LazyLoader(spec.loader)
        return spec


class _Hiding:
    """Runs a module with ``sys.modules[name]`` set to ``stand_in`` (``None``: importing it
    fails), then puts things back so that the real module can be imported again."""

    def __init__(self, loader: Any, name: str, stand_in: ModuleType | None) -> None:
        self._loader = loader
        self._name = name
        self._stand_in = stand_in

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        sys.modules[self._name] = self._stand_in  # type: ignore[assignment]
        try:
            self._loader.exec_module(module)
        finally:
            if sys.modules.get(self._name, 0) is self._stand_in:
                del sys.modules[self._name]


def _metadata_stand_in() -> ModuleType:
    stand_in = ModuleType(_METADATA, "What nats.aio.client reads of importlib.metadata.")
    stand_in.version = distribution_version  # type: ignore[attr-defined]
    return stand_in


def distribution_version(name: str) -> str:
    """The installed version of distribution ``name``, from its ``.dist-info`` folder's
    name next to the nats package when there is exactly one, else from importlib.metadata."""
    prefix = name.replace("-", "_").lower() + "-"
    package = sys.modules.get("nats")  # being imported: its __path__ is set
    places = getattr(package, "__path__", None)
    if places is None:
        spec = importlib.machinery.PathFinder.find_spec("nats")
        places = spec.submodule_search_locations if spec is not None else None
    for place in places or ():
        try:
            found = [
                entry
                for entry in os.listdir(os.path.dirname(place))
                if entry.lower().startswith(prefix) and entry.endswith(".dist-info")
            ]
        except OSError:
            continue
        if len(found) == 1:
            return found[0][len(prefix) : -len(".dist-info")]
    from importlib.metadata import version

    return version(name)


def install() -> None:
    """Keep aiohttp and importlib.metadata out of nats-py's first import (a no-op once
    nats is loaded)."""
    if _CLIENT in sys.modules:
        return
    _pending.update({_TRANSPORT, _CLIENT})
    if _Hook not in sys.meta_path:
        sys.meta_path.insert(0, _Hook)


def defer_jetstream() -> None:
    """Load ``nats.js`` on first use rather than with ``import nats`` (a no-op once nats is
    loaded). For a process that may not need JetStream and touches nats from one thread
    until it does (LazyLoader is not thread-safe before Python 3.12)."""
    if _CLIENT in sys.modules or _JETSTREAM in sys.modules:
        return
    install()
    _pending.add(_JETSTREAM)


def jetstream_loaded() -> bool:
    """True once ``nats.js`` has run (not merely been deferred): it imports its client."""
    return "nats.js.client" in sys.modules


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
