"""The registry: one KV key per running instance, heartbeats, and the watched live view.

nats-py's JetStream layer (``nats.js``) is imported where it is used, not here: a one-shot
caller reads the registry with :func:`natsmesh.registry_snapshot.snapshot`, which speaks
the JetStream API itself, and then never loads it (see
:func:`natsmesh.natsimport.defer_jetstream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from natsmesh.condition import Condition
from natsmesh.config import Settings
from natsmesh.dependency import DependencySpec
from natsmesh.errors import NoProvider
from natsmesh.records import (
    MAX_RECORD_BYTES,
    RecordError,
    decode_from_registry,
    encode_for_registry,
)
from natsmesh.selection import Candidate, select
from natsmesh.wire import AgentRecord

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger("natsmesh.registry")


async def open_bucket(js: JetStreamContext, settings: Settings, create: bool = True) -> KeyValue:
    """The registry bucket, created when missing (history 1, TTL, values of at most
    ``MAX_RECORD_BYTES``, no rollups nor purges: see :func:`harden_bucket`).

    Creating a replicated bucket can fail until a new cluster has elected a leader,
    so creation is retried for a few seconds.
    """
    from nats.js.api import KeyValueConfig
    from nats.js.errors import BucketNotFoundError

    deadline = time.monotonic() + 15
    while True:
        try:
            try:
                return await js.key_value(settings.registry_bucket)
            except BucketNotFoundError:
                if not create:
                    raise
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=settings.registry_bucket,
                    description="natsmesh registry: one key per running agent instance",
                    history=1,
                    ttl=settings.registry_ttl,
                    replicas=settings.replicas,
                    max_value_size=MAX_RECORD_BYTES,
                )
            )
            await harden_bucket(js, settings)
            return kv
        except BucketNotFoundError:
            raise
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            log.debug("opening the registry bucket failed (%s); retrying", exc)
            await asyncio.sleep(0.2)


def check_registrable(record: AgentRecord) -> None:
    """Raise :class:`~natsmesh.records.RecordError` (a ``ValueError`` that says what to
    change) when ``record`` is too large or breaks a rule: call it before serving."""
    encode_for_registry(record)


async def harden_bucket(js: JetStreamContext, settings: Settings) -> bool:
    """Make the registry's stream refuse rollups, purges and oversized values; True if it
    changed anything.

    A put carrying ``Nats-Rollup: all`` to an agent's own key would purge every other
    agent's entry, and a NATS permission cannot look at headers: the stream itself must
    refuse rollups. nats-server requires rollups for subject delete markers ("limit
    markers"), so the bucket has none: views expire silent entries themselves
    (:class:`RegistryView`). Needs the right to update the stream (the admin; ``natsmesh
    setup``).
    """
    info = await js.stream_info(f"KV_{settings.registry_bucket}")
    config = info.config
    if (
        not config.allow_rollup_hdrs
        and config.deny_purge
        and not config.subject_delete_marker_ttl
        and config.max_msg_size == MAX_RECORD_BYTES
    ):
        return False
    config.allow_rollup_hdrs = False
    config.deny_purge = True
    config.subject_delete_marker_ttl = None
    config.max_msg_size = MAX_RECORD_BYTES
    await js.update_stream(config)
    return True


async def bucket_ttl(kv: KeyValue, default: float) -> float:
    """The TTL the bucket was created with (it wins over the local setting)."""
    try:
        status = await kv.status()
        return float(status.ttl or default)
    except Exception:
        return default


class Registration:
    """Keeps one instance's key alive: put, heartbeat every third of the TTL, delete at stop."""

    def __init__(self, kv: KeyValue, key: str, record: AgentRecord, interval: float) -> None:
        """Raises :class:`~natsmesh.records.RecordError` when the record is out of bounds."""
        self._kv = kv
        self.key = key
        self._value = encode_for_registry(record)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._kv.put(self.key, self._value)
        self._task = asyncio.create_task(self._beat(), name=f"heartbeat {self.key}")

    async def refresh(self) -> None:
        """Write the entry now (after a reconnect the old one may have expired)."""
        with contextlib.suppress(Exception):
            await self._kv.put(self.key, self._value)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._kv.put(self.key, self._value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat for %s failed: %s", self.key, exc)

    async def stop(self) -> None:
        """Stop heartbeating and delete the key, so watchers see the instance leave at once."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._kv.delete(self.key)


#: a KV entry's ``KV-Operation`` header on a delete or purge marker (nats-py's KV_DEL, KV_PURGE)
REMOVALS = frozenset({"DEL", "PURGE"})

#: seconds the server keeps a view's consumer after its process stopped listening (nats-py's
#: default, 5 minutes, lets short-lived callers pile up consumers to the stream's limit)
WATCH_INACTIVE = 10.0


async def _delete_consumer(watcher: Any) -> None:
    """Delete a stopped view's consumer now rather than when it expires (best effort)."""
    sub = getattr(watcher, "_sub", None)
    js = getattr(sub, "_js", None)  # nats-py's push subscription keeps its JetStream context
    if sub is None or js is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            info = await sub.consumer_info()
            await js.delete_consumer(info.stream_name, info.name)


class RegistryView:
    """A live in-memory copy of the registry, fed by one KV watcher.

    The call path reads memory only. Entries are applied by revision, and the
    watcher is re-created after a reconnect (its consumer may be gone). An entry that
    is not refreshed within the bucket's TTL leaves the view (the server expires it too,
    but without a marker: the bucket refuses rollups, which markers need). Entries that
    break a rule (:mod:`natsmesh.records`) are skipped with one warning per key.
    """

    def __init__(self, kv: KeyValue | None) -> None:
        """``kv``: the bucket to watch (``None`` for a view that :func:`snapshot` fills)."""
        self._kv: Any = kv
        self.records: dict[str, AgentRecord] = {}
        self.last_seen: dict[str, float] = {}
        self._revisions: dict[str, int] = {}
        self._cache: dict[DependencySpec, list[Candidate]] = {}
        self._names: dict[str, str] = {}
        self._changes = Condition()
        self._task: asyncio.Task[None] | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._listeners: list[Callable[[], None]] = []
        #: keys whose entries were refused, and why (each is warned about once)
        self._rejected: dict[str, str] = {}
        #: when each entry expires (monotonic seconds), unless refreshed first
        self._expires: dict[str, float] = {}
        self._ttl = 0.0
        self._initial = True
        self._sweeper: asyncio.Task[None] | None = None

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every change of the view; returns a function that
        removes it. Listeners run on the event loop and must not block."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def start(self, timeout: float = 5.0) -> None:
        """Start watching; returns once the current entries are loaded.

        "Loaded" means the watcher has delivered every entry the bucket held when watching
        began (up to the stream's last sequence, read first), not merely that nats-py sent
        its end-of-initial-state marker: that marker is derived from a pending count and
        can come before the entries when the bucket is busy.
        """
        loaded = asyncio.get_running_loop().create_future()
        status = await self._kv.status()
        self._ttl = float(status.ttl or 0)
        state = status.stream_info.state
        target = int(state.last_seq or 0) if state.messages else 0
        self._initial = True
        self._task = asyncio.create_task(self._run(loaded, target), name="registry watcher")
        if self._ttl and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="registry expiry")
        await asyncio.wait_for(asyncio.shield(loaded), timeout)

    async def _sweep(self) -> None:
        """Forget entries whose agent stopped heartbeating (no refresh within the TTL).

        Time spent disconnected from NATS does not count: no heartbeat can arrive then,
        and after the reconnect the watcher is re-created and reloads the entries.
        """
        nc = getattr(getattr(self._kv, "_js", None), "_nc", None)
        paused: float | None = None
        while True:
            await asyncio.sleep(min(1.0, self._ttl / 4))
            now = time.monotonic()
            if nc is not None and not nc.is_connected:
                paused = now if paused is None else paused
                continue
            if paused is not None:
                for key in self._expires:
                    self._expires[key] += now - paused
                paused = None
            gone = [key for key, deadline in self._expires.items() if deadline < now]
            for key in gone:
                self._forget(key)
            if gone:
                self._bump()

    async def restart(self, patience: float = 60.0) -> None:
        """Re-create the watcher (after a reconnect) and reconcile what was missed.

        JetStream may need a moment after a server restart, so this retries with a
        short backoff for up to ``patience`` seconds.
        """
        await self.stop()
        deadline = time.monotonic() + patience
        delay = 0.1
        while True:
            try:
                await self.start()
                return
            except Exception as exc:
                await self.stop()
                if time.monotonic() > deadline:
                    log.error("could not re-create the registry watcher: %s", exc)
                    raise
                log.debug("registry watcher not back yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sweeper
            self._sweeper = None
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._watcher:
            await _delete_consumer(self._watcher)
            with contextlib.suppress(Exception):
                await self._watcher.stop()
            self._watcher = None

    async def _run(self, loaded: asyncio.Future[None], target: int) -> None:
        # The watcher delivers in stream order, so once it has delivered sequence ``target``
        # (the last one when watching began) it has delivered every entry older than that.
        watcher = self._watcher = await self._kv.watchall(inactive_threshold=WATCH_INACTIVE)
        seen: set[str] | None = set()
        highest = 0
        check: asyncio.Task[None] | None = None

        def complete() -> None:
            nonlocal seen
            self._initial = False
            if seen is not None:  # the initial state is complete: drop what left meanwhile
                for key in set(self.records) - seen:
                    self._forget(key)
                seen = None
            if check is not None:
                check.cancel()
            self._bump()
            if not loaded.done():
                loaded.set_result(None)

        async def recheck() -> None:
            # the message at ``target`` may be removed before it is delivered (it expired):
            # then the stream's first sequence moves past it, and nothing older is coming
            while seen is not None:
                await asyncio.sleep(0.25)
                state = (await self._kv.status()).stream_info.state
                if seen is not None and (not state.messages or state.first_seq > target):
                    complete()

        if target == 0:
            complete()
        else:
            check = asyncio.create_task(recheck(), name="registry first load")
        try:
            async for entry in watcher:
                if entry is None:  # nats-py's own end-of-initial-state marker: not trusted
                    continue
                highest = max(highest, entry.revision or 0)
                if seen is not None:
                    seen.add(entry.key)
                self._apply(entry)
                if seen is None:
                    self._bump()
                elif highest >= target:
                    complete()
        finally:
            if check is not None:
                check.cancel()

    def _apply(self, entry: KeyValue.Entry) -> None:
        created: Any = entry.created  # nats-py types it int; it is a datetime
        self._store(
            entry.key,
            entry.revision or 0,
            entry.operation in REMOVALS,
            entry.value,
            created.timestamp() if created is not None else None,
        )

    def _store(
        self, key: str, revision: int, removed: bool, value: bytes | None, written: float | None
    ) -> None:
        """Apply one registry entry: ``removed`` for a delete or purge marker, ``written``
        the server's time of the write (seconds since the epoch; ``None``: now)."""
        if revision < self._revisions.get(key, 0):
            return
        self._revisions[key] = revision
        if removed or not value:
            self._forget(key)
            self._rejected.pop(key, None)
            return
        try:
            self.records[key] = decode_from_registry(key, value)
        except RecordError as exc:
            if self._rejected.get(key) != str(exc):  # once per key, not once per heartbeat
                self._rejected[key] = str(exc)
                log.warning("ignoring registry entry %s: %s", key, exc)
            self._forget(key)
            return
        self._rejected.pop(key, None)
        now = time.time()
        written = now if written is None else written
        self.last_seen[key] = written
        if self._ttl:
            # live updates were just written; an entry of the initial state may be older
            # (its age comes from the server's clock, so it is clamped to the TTL)
            age = min(max(now - written, 0.0), self._ttl) if self._initial else 0.0
            self._expires[key] = time.monotonic() + self._ttl - age

    def _forget(self, key: str) -> None:
        self.records.pop(key, None)
        self.last_seen.pop(key, None)
        self._expires.pop(key, None)

    def _bump(self) -> None:
        self._cache.clear()
        self._names.clear()
        self._changes.notify()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("registry view listener failed")

    async def wait_for(self, predicate: Callable[[RegistryView], bool], timeout: float) -> None:
        """Wait until ``predicate(view)`` holds; raises ``TimeoutError`` after ``timeout``."""
        await self._changes.wait_until(lambda: predicate(self), timeout)

    # --- reading the view (memory only) ---------------------------------------------

    def select(self, dep: DependencySpec) -> list[Candidate]:
        """Ranked live candidates for ``dep`` (cached until the registry changes)."""
        cached = self._cache.get(dep)
        if cached is None:
            cached = self._cache[dep] = select(self.records.values(), dep)
        if len(cached) > 1 and cached[0].score == cached[1].score:
            # share the ties: a new random order for the best-scored candidates only
            tied = [c for c in cached if c.score == cached[0].score]
            random.shuffle(tied)
            return tied + cached[len(tied) :]
        return cached

    def has(self, capability: str) -> bool:
        """True when some live instance provides ``capability``."""
        return any(t.capability == capability for r in self.records.values() for t in r.tools)

    def resolve(self, name: str) -> str:
        """The capability for a tool name or a capability (cached until the registry
        changes); raises :class:`NoProvider`."""
        capability = self._names.get(name)
        if capability is not None:
            return capability
        tools = [t for r in self.records.values() for t in r.tools]
        if any(t.capability == name for t in tools):
            capability = name
        else:
            capability = next((t.capability for t in tools if t.name == name), None)
        if capability is None:
            raise NoProvider(
                f"no live agent offers a tool or capability named {name!r} "
                "(`natsmesh list --tools` shows what is available)"
            )
        self._names[name] = capability
        return capability
