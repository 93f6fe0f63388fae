"""What hostile callers cost: the sidecar's memory and the requests it makes to Pipedream.

``python -m bench.hostile`` starts the emulator (in this process, so its request
counters can be read directly) and ``pdsidecar serve`` as a child process on
loopback, then plays four attacks, each counted where it lands:

1. **memo**: ``--memo`` (1,000) GetCredentials requests for one cached account,
   each carrying ``--size`` (60,000) bytes of unknown fields that differ per
   request. Reported: the sidecar's RSS before, after, and its peak (VmHWM).
2. **cancelled**: ``--cancelled`` (1,000) calls at once, each for a distinct
   unknown account id with a 100 ms deadline, against a slow Pipedream
   (``--latency``, 0.5 s per account request); then one legitimate cold call from
   another connection. Reported: the account requests Pipedream saw once
   everything settled, and how the legitimate call fared.
3. **rejected**: ``--rejected`` (100) calls sending the account's real access token as
   ``rejected_access_token`` from another tenant, then as many from the right tenant.
   Reported: account requests each batch caused.
4. **forced**: ``--forced`` (100) ``RefreshToken(force=true)`` calls, at once and then
   one after another. Reported: token requests.

``--server-path DIR`` runs the sidecar from another source tree (e.g. an export of an
earlier commit's ``server/``) to compare. Prints a table and writes JSON with ``--json``.
Then, on a sidecar with an API token and two listeners, the admission rows of
:mod:`bench.hostile_streams` (health flood, non-reading reflection, a victim's watch,
random ids, malformed bytes); then, on two sidecars sharing a Redis, the fleet row of
:mod:`bench.hostile_fleet` (one caller's reads spread over both). ``--rows
calls|streams|fleet`` runs one part.
Every process started here is stopped by its own pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_USER_BOB,
    Emulator,
    demo_state,
)

from bench import hostile_fleet
from bench import hostile_streams as streams
from bench.hostile_streams import codes
from harness.ports import free_port
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

GET = "/pdsidecar.v1.CredentialsService/GetCredentials"

# A connection of its own: channels with equal arguments share one by default.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def unknown_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def request(account_id: str, **fields: Any) -> pb.GetCredentialsRequest:
    user = fields.pop("external_user_id", "")
    ref = pb.AccountRef(project_id=DEMO_PROJECT_ID, account_id=account_id, external_user_id=user)
    return pb.GetCredentialsRequest(account=ref, source="notion", **fields)


class Sidecar:
    def __init__(
        self, url: str, folder: Path, server_path: str | None, token: str | None = None
    ) -> None:
        secret = folder / "secret"
        secret.write_text(DEMO_CLIENT_SECRET)
        config = folder / "pdsidecar.toml"
        config.write_text(
            f'pipedream_url = "{url}"\n\n[connections.default]\n'
            f'client_id = "{DEMO_CLIENT_ID}"\nclient_secret_file = "{secret}"\n'
        )
        self.target = f"127.0.0.1:{free_port()}"
        # A second listener, for the rows that compare listeners.
        self.other_target = f"127.0.0.1:{free_port()}"
        self.metrics = f"127.0.0.1:{free_port()}"
        env = dict(os.environ)
        if token is not None:
            env["PDSIDECAR_API_TOKEN"] = token
        if server_path:
            env["PYTHONPATH"] = server_path + os.pathsep + env.get("PYTHONPATH", "")
        self.log_path = folder / "sidecar.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pdsidecar", "serve", "--config", str(config)),
                *("--listen", self.target, "--listen", self.other_target),
                *("--metrics-listen", self.metrics),
                *("--log-level", "warning"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
            start_new_session=True,
        )

    async def ready(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(200):
                try:
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return
                except grpc.RpcError:
                    await asyncio.sleep(0.1)
        raise RuntimeError("the sidecar did not start")

    def rss_mb(self) -> float:
        return status_kb(self.proc.pid, "VmRSS") / 1024

    def peak_mb(self) -> float:
        return status_kb(self.proc.pid, "VmHWM") / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def settle(emulator: Emulator, quiet: float = 1.0, limit: float = 120.0) -> float:
    """Wait until Pipedream has had nothing in flight for ``quiet`` seconds; the time taken."""
    started = time.monotonic()
    still_since = None
    while time.monotonic() - started < limit:
        if emulator.state.in_flight == 0:
            still_since = still_since or time.monotonic()
            if time.monotonic() - still_since >= quiet:
                break
        else:
            still_since = None
        await asyncio.sleep(0.05)
    return time.monotonic() - started - quiet


async def memo_attack(sidecar: Sidecar, n: int, size: int) -> dict[str, Any]:
    plain = request(DEMO_NOTION_ACCOUNT_ID).SerializeToString()
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        call = channel.unary_unary(GET)
        expected = await call(plain)
        await asyncio.sleep(0.5)
        before = sidecar.rss_mb()
        results: list[Any] = []
        for i in range(n):
            payload = i.to_bytes(4, "big") + secrets.token_bytes(64) * (size // 64)
            try:
                answer = await call(plain + unknown_field(1000 + i % 50, payload[:size]), timeout=5)
                assert answer == expected
                results.append(answer)
            except grpc.RpcError as error:  # past the request size cap
                results.append(error)
        await asyncio.sleep(0.5)
    return {
        "requests": n,
        "unknown_bytes_each": size,
        "codes": codes(results),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(sidecar.rss_mb(), 1),
        "rss_peak_mb": round(sidecar.peak_mb(), 1),
    }


async def cancelled_attack(sidecar: Sidecar, emulator: Emulator, n: int) -> dict[str, Any]:
    emulator.state.reset_stats()
    async with (
        grpc.aio.insecure_channel(sidecar.target, options=OWN_CONNECTION) as hostile_channel,
        grpc.aio.insecure_channel(sidecar.target, options=OWN_CONNECTION) as legit_channel,
    ):
        hostile = pb_grpc.CredentialsServiceStub(hostile_channel)
        legit = pb_grpc.CredentialsServiceStub(legit_channel)
        await legit_channel.channel_ready()
        calls = [
            hostile.GetCredentials(request(f"apn_hostile{i:06d}"), timeout=0.1) for i in range(n)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        ids = emulator.state.add_generated_accounts(1)
        started = time.monotonic()
        try:
            await legit.GetCredentials(request(ids[0]), timeout=10)
            legit_result = f"OK in {time.monotonic() - started:.2f} s"
        except grpc.RpcError as error:
            legit_result = f"{error.code().name} after {time.monotonic() - started:.2f} s"
    busy = await settle(emulator)
    return {
        "calls": n,
        "codes": codes(results),
        "account_requests": emulator.state.requests["account"] - 1,  # minus the legit one
        "pipedream_busy_s": round(busy, 2),
        "max_in_flight": emulator.state.max_in_flight,
        "legit_cold_call": legit_result,
    }


async def rejected_attack(sidecar: Sidecar, emulator: Emulator, n: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        token = (await stub.GetCredentials(request(DEMO_NOTION_ACCOUNT_ID))).credentials[
            "access_token"
        ]
        await asyncio.sleep(0.01)
        out: dict[str, Any] = {"calls_per_batch": n}
        for name, extra in (
            ("other_tenant", {"external_user_id": DEMO_USER_BOB}),
            ("same_tenant", {}),
        ):
            emulator.state.reset_stats()
            hostile = request(DEMO_NOTION_ACCOUNT_ID, rejected_access_token=token, **extra)
            results = []
            for _ in range(n):
                try:
                    results.append(await stub.GetCredentials(hostile))
                except grpc.RpcError as error:
                    results.append(error)
            out[name] = {
                "codes": codes(results),
                "account_requests": emulator.state.requests["account"],
            }
    return out


async def forced_attack(sidecar: Sidecar, emulator: Emulator, n: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        emulator.state.reset_stats()
        forced = pb.RefreshTokenRequest(force=True)
        await asyncio.gather(*(stub.RefreshToken(forced) for _ in range(n)))
        at_once = emulator.state.requests["token"]
        emulator.state.reset_stats()
        for _ in range(n):
            await stub.RefreshToken(forced)
        one_by_one = emulator.state.requests["token"]
    return {"calls": n, "token_requests_at_once": at_once, "token_requests_one_by_one": one_by_one}


async def stream_rows(args: argparse.Namespace) -> dict[str, Any]:
    """The admission rows (bench/hostile_streams.py), on a sidecar with an API token."""
    token = secrets.token_urlsafe(24)
    bearer = (("authorization", f"Bearer {token}"),)
    result: dict[str, Any] = {}
    async with Emulator(demo_state()) as emulator:
        with tempfile.TemporaryDirectory(prefix="pd-hostile-") as folder:
            sidecar = Sidecar(emulator.url, Path(folder), args.server_path, token)
            try:
                await sidecar.ready()
                result["malformed"] = await streams.malformed(
                    sidecar, args.malformed, bearer, sidecar.log_path
                )
                result["health_flood"] = await streams.health_flood(
                    sidecar, args.health_streams, bearer
                )
                for name, host_bytes in (
                    ("reflection_hold", 60_000),
                    ("reflection_hold_small", 16),
                ):
                    result[name] = await streams.reflection_hold(
                        sidecar, args.reflection_streams, bearer, args.hold, host_bytes
                    )
                # Before random_ids: that one spends the project's read budget on main.
                result["victim_watch"] = await streams.victim_watch(
                    sidecar, emulator, args.victim_watches, args.latency, bearer
                )
                result["random_ids"] = await streams.random_ids(
                    sidecar, emulator, args.random_ids, sidecar.other_target, bearer
                )
            finally:
                sidecar.stop()
    return result


async def fleet_rows(args: argparse.Namespace) -> dict[str, Any]:
    """The fleet row (bench/hostile_fleet.py): two sidecars, one Redis."""
    async with Emulator(demo_state()) as emulator:
        with tempfile.TemporaryDirectory(prefix="pd-hostile-") as folder:
            row = await hostile_fleet.fleet_budget(
                emulator, Path(folder), args.fleet_accounts, args.server_path
            )
    return {"fleet_budget": row}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.rows == "streams":
        return {"server_path": args.server_path or "this tree", **await stream_rows(args)}
    if args.rows == "fleet":
        return {"server_path": args.server_path or "this tree", **await fleet_rows(args)}
    async with Emulator(demo_state()) as emulator:
        with tempfile.TemporaryDirectory(prefix="pd-hostile-") as folder:
            sidecar = Sidecar(emulator.url, Path(folder), args.server_path)
            try:
                await sidecar.ready()
                result: dict[str, Any] = {"server_path": args.server_path or "this tree"}
                result["memo"] = await memo_attack(sidecar, args.memo, args.size)
                result["rejected"] = await rejected_attack(sidecar, emulator, args.rejected)
                result["forced"] = await forced_attack(sidecar, emulator, args.forced)
                emulator.state.set_latency(args.latency, "account")
                result["cancelled"] = await cancelled_attack(sidecar, emulator, args.cancelled)
                result["cancelled"]["latency_s"] = args.latency
            finally:
                sidecar.stop()
    if args.rows == "all":
        result.update(await stream_rows(args))
        result.update(await fleet_rows(args))
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memo", type=int, default=1000)
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--cancelled", type=int, default=1000)
    parser.add_argument("--rejected", type=int, default=100)
    parser.add_argument("--forced", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--health-streams", type=int, default=10_000)
    parser.add_argument("--reflection-streams", type=int, default=200)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds reflection streams send")
    parser.add_argument("--victim-watches", type=int, default=1000)
    parser.add_argument("--random-ids", type=int, default=2100)
    parser.add_argument("--malformed", type=int, default=50, help="bad requests per method")
    parser.add_argument(
        "--fleet-accounts", type=int, default=2400, help="cold accounts one caller reads"
    )
    parser.add_argument(
        "--rows",
        choices=["all", "calls", "streams", "fleet"],
        default="all",
        help="calls: rows 1-4; streams: the admission rows (bench/hostile_streams.py); "
        "fleet: one caller over two sidecars (bench/hostile_fleet.py)",
    )
    parser.add_argument("--server-path", help="run the sidecar from this source tree")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    cli()
