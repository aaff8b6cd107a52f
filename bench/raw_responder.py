"""The baseline: a plain nats-py responder that echoes the request body."""

from __future__ import annotations

import asyncio
import signal
import sys

import nats


async def main(url: str, subject: str) -> None:
    nc = await nats.connect(url)

    async def echo(msg: nats.aio.msg.Msg) -> None:
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe(subject, cb=echo)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1], sys.argv[2]))
