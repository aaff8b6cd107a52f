"""The streaming baseline: a plain nats-py responder that publishes N messages to the reply
subject (no headers, no flow control), then an empty final one."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import nats


async def main(url: str, subject: str) -> None:
    nc = await nats.connect(url)

    async def stream(msg: nats.aio.msg.Msg) -> None:
        request = json.loads(msg.data)
        piece = json.dumps("x" * request["size"]).encode()
        for _ in range(request["n"]):
            await nc.publish(msg.reply, piece)
        await nc.publish(msg.reply, b"")

    await nc.subscribe(subject, cb=stream)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1], sys.argv[2]))
