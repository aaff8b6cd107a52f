"""The registry read once, for a one-shot caller, without nats-py's JetStream layer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from natsmesh.config import Settings
from natsmesh.errors import Unavailable
from natsmesh.registry import REMOVALS, WATCH_INACTIVE, RegistryView

if TYPE_CHECKING:
    from nats.aio.client import Client


async def snapshot(nc: Client, settings: Settings, timeout: float = 5.0) -> RegistryView:
    """The registry as it is now, read once: a view that no watcher updates.

    For a one-shot caller (``natsmesh call``). It speaks the JetStream API itself, so
    nats-py's JetStream layer need not be imported, and takes one round trip: an
    ephemeral push consumer delivers the last entry of every key (no heartbeats nor flow
    control, so no status messages), and the reply subject of each delivery says how
    many are still pending. The consumer is deleted in the background (its inactivity
    threshold removes it otherwise). A missing bucket reads as an empty registry; raises
    :class:`Unavailable` when JetStream does not answer.
    """
    stream = f"KV_{settings.registry_bucket}"
    view = RegistryView(None)
    inbox = nc.new_inbox()
    done = asyncio.get_running_loop().create_future()
    start = len(f"$KV.{settings.registry_bucket}.")

    async def deliver(msg: Any) -> None:
        # $JS.ACK.[<domain>.<account hash>.]<stream>.<consumer>.<delivered>.<stream seq>.
        #   <consumer seq>.<ns since the epoch>.<pending>[.<random>]
        tokens = msg.reply.split(".")
        at = 2 if len(tokens) == 9 else 4
        if len(tokens) < 9 or done.done():
            return
        view._store(
            msg.subject[start:],
            int(tokens[at + 3]),
            (msg.headers or {}).get("KV-Operation") in REMOVALS,
            msg.data,
            int(tokens[at + 5]) / 1e9,
        )
        if tokens[at + 6] == "0":
            done.set_result(None)

    sub = await nc.subscribe(inbox, cb=deliver)
    name = ""
    try:
        request = {
            "stream_name": stream,
            "config": {
                "deliver_subject": inbox,
                "deliver_policy": "last_per_subject",
                "ack_policy": "none",
                "replay_policy": "instant",
                "filter_subject": f"$KV.{settings.registry_bucket}.>",
                "inactive_threshold": int(WATCH_INACTIVE * 1e9),
                "mem_storage": True,
                "num_replicas": 1,
            },
        }
        try:
            reply = await nc.request(
                f"$JS.API.CONSUMER.CREATE.{stream}", json.dumps(request).encode(), timeout
            )
            info = json.loads(reply.data)
        except Exception as exc:
            raise Unavailable(
                f"cannot read the registry: JetStream did not answer ({_why(exc)})"
            ) from exc
        error = info.get("error")
        if error:
            if error.get("err_code") == 10059:  # stream not found: no agent ever registered
                return view
            raise Unavailable(f"cannot read the registry: {error.get('description', error)}")
        name = info.get("name", "")
        delivered = (info.get("delivered") or {}).get("consumer_seq", 0)
        if info.get("num_pending", 0) or delivered:
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout)
            except TimeoutError:
                raise Unavailable("cannot read the registry: its entries did not arrive") from None
        view._initial = False
        return view
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name:
            delete = nc.request(f"$JS.API.CONSUMER.DELETE.{stream}.{name}", b"", 1.0)
            task = asyncio.ensure_future(delete)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            _deleting.add(task)
            task.add_done_callback(_deleting.discard)


#: consumer deletions under way (kept referenced until they finish)
_deleting: set[asyncio.Future[Any]] = set()


def _why(exc: BaseException) -> str:
    name = type(exc).__name__
    if "NoResponders" in name:
        return "no responders: is JetStream enabled?"
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return "timed out: is JetStream enabled, and may this user read the registry?"
    return str(exc) or name
