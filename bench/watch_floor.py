"""The floor under a watcher's memory: what an idle grpc.aio server stream costs by itself.

``python -m bench.watch_floor --streams N`` serves one unary-stream method that writes one
message and then waits forever (nothing of pdsidecar), opens 100 streams to warm up from
a child process, reads this process's RSS, opens ``N`` more from a second child, reads it
again and prints ``{"streams": N, "bytes_per_stream": ...}`` as JSON. The children are
this module run with ``--client``; both are stopped by their own pid.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys

import grpc

METHOD = "/bench.Floor/Watch"
CHANNELS = 10


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _client(target: str, streams: int) -> None:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(CHANNELS)]
    calls = [
        channels[n % CHANNELS].unary_stream(METHOD, None, None)(b"", wait_for_ready=True)
        for n in range(streams)
    ]
    await asyncio.gather(*(call.read() for call in calls))
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _open(target: str, streams: int) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.watch_floor", "--client", target, "--streams", str(streams),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    await asyncio.wait_for(child.stdout.readline(), 120)
    return child


async def _settled() -> int:
    gc.collect()
    await asyncio.sleep(2)
    return _rss()


async def measure(streams: int) -> dict[str, int]:
    forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def watch(_: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        await context.write(b"x")
        await forever

    server = grpc.aio.server(options=[("grpc.server.max_pending_requests", 20_000)])
    handler = grpc.unary_stream_rpc_method_handler(watch)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Floor", {"Watch": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    children = []
    try:
        children.append(await _open(f"127.0.0.1:{port}", 100))
        before = await _settled()
        children.append(await _open(f"127.0.0.1:{port}", streams))
        after = await _settled()
    finally:
        for child in children:
            child.kill()
            await child.wait()
        await server.stop(0)
    return {"streams": streams, "bytes_per_stream": round((after - before) / streams)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--client", metavar="TARGET")
    args = parser.parse_args()
    if args.client:
        asyncio.run(_client(args.client, args.streams))
    else:
        print(json.dumps(asyncio.run(measure(args.streams))))


if __name__ == "__main__":
    main()
