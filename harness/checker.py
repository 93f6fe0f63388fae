"""A load that checks every answer: the soak's judge (the benchmark's and the test suite's).

ghz counts status codes but cannot read payloads, so this asyncio client (``grpc.aio``)
runs next to it. Every account has its own access token; an OK answer must carry exactly
the token of the account asked for. A failure must be UNAVAILABLE or RESOURCE_EXHAUSTED
with a ``google.rpc.RetryInfo``; anything else (UNKNOWN and INTERNAL above all) is counted
as unexpected.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass
class Tally:
    calls: int = 0
    ok: int = 0
    # OK answers whose access token is not the one of the account asked for.
    wrong: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    # UNAVAILABLE / RESOURCE_EXHAUSTED without RetryInfo.
    missing_retry_info: int = 0
    # Any other failure code, by name.
    unexpected: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def record_error(self, error: grpc.RpcError) -> None:
        rich = CredentialsError.from_rpc_error(error)
        self.codes[rich.code.name] += 1
        if rich.reason:
            self.reasons[rich.reason] += 1
        if rich.code not in RETRYABLE:
            self.unexpected[rich.code.name] += 1
        elif rich.retry_after is None:
            self.missing_retry_info += 1

    @property
    def clean(self) -> bool:
        return not self.wrong and not self.unexpected and not self.missing_retry_info

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def pct(q: float) -> float:
            return (
                round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0
            )

        return {
            "calls": self.calls,
            "ok": self.ok,
            "wrong_credentials": self.wrong,
            "codes": dict(self.codes),
            "reasons": dict(self.reasons),
            "missing_retry_info": self.missing_retry_info,
            "unexpected": dict(self.unexpected),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        }


def request_for(account_id: str, project_id: str = "proj_demo") -> pb.GetCredentialsRequest:
    return pb.GetCredentialsRequest(
        account=pb.AccountRef(project_id=project_id, account_id=account_id), source="notion"
    )


async def checked_load(
    stub: pb_grpc.CredentialsServiceStub,
    tokens: Mapping[str, str],
    account_ids: Sequence[str],
    *,
    concurrency: int,
    duration: float,
    timeout: float = 10.0,
    tally: Tally | None = None,
) -> Tally:
    """``concurrency`` callers, each calling in a loop for ``duration`` seconds."""
    tally = tally if tally is not None else Tally()
    requests = [(a, request_for(a)) for a in account_ids]
    turn = itertools.cycle(range(len(requests)))
    stop_at = time.monotonic() + duration

    async def caller() -> None:
        while time.monotonic() < stop_at:
            account_id, request = requests[next(turn)]
            started = time.perf_counter()
            try:
                response = await stub.GetCredentials(request, timeout=timeout)
            except grpc.RpcError as error:
                tally.record_error(error)
            else:
                tally.ok += 1
                if (
                    response.credentials.get("access_token") != tokens[account_id]
                    or response.account.account_id != account_id
                ):
                    tally.wrong += 1
            tally.calls += 1
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return tally
