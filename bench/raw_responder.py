"""The baseline: a plain nats-py responder that echoes the request body.

``python bench/raw_responder.py URL SUBJECT [MODE...]``; the modes add, one at a time,
what a mesh worker does per request (``python -m bench.natscost`` measures each):
``headers`` (reply with a ``Mesh-Instance`` header, as a worker does), ``task`` (serve
each request in its own task), ``json`` (decode the arguments and encode a
``{"result": ...}`` envelope with msgspec); ``fast`` installs the header codec experiment
of bench/fastheaders.py.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from typing import Any

import msgspec
import nats

#: a worker's reply headers (same names and sizes as natsmesh's)
REPLY_HEADERS = {"Mesh-Instance": "bench-echo-0123abcd"}


def request_headers(traced: bool) -> dict[str, str]:
    """Headers of the names and sizes a mesh call sends (see natsmesh/client.py)."""
    hdrs = {
        "Mesh-Caller": "bench",
        "Mesh-Deadline": str(int((time.time() + 30) * 1000)),
        "Mesh-Protocol": "2",
        "Mesh-Tool": "bench_echo",
    }
    if traced:
        hdrs["traceparent"] = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    return hdrs


async def main(url: str, subject: str, modes: set[str]) -> None:
    if "fast" in modes:
        import fastheaders  # this script's folder is on sys.path

        fastheaders.install()
    nc = await nats.connect(url)
    headers = REPLY_HEADERS if "headers" in modes else None
    encode, decode = msgspec.json.encode, msgspec.json.decode
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def reply(msg: Any) -> None:
        body = encode({"result": decode(msg.data)}) if "json" in modes else msg.data
        await nc.publish(msg.reply, body, headers=headers)

    if "task" in modes:

        async def handler(msg: Any) -> None:
            task = loop.create_task(reply(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    else:
        handler = reply

    await nc.subscribe(subject, cb=handler)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1], sys.argv[2], set(sys.argv[3:])))
