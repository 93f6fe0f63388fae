"""Prometheus metrics scraped over HTTP move with the calls made."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator
from prometheus_client.parser import text_string_to_metric_families

from pdsidecar.config.listen import parse_listen
from pdsidecar.observe.http import route_of
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(sidecar: Sidecar) -> tuple[str, Samples]:
    assert sidecar.metrics is not None
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{sidecar.metrics.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


GET = {"grpc_service": "pdsidecar.v1.CredentialsService", "grpc_method": "GetCredentials"}


async def test_counters_move_after_calls(settings: Settings, emulator: Emulator) -> None:
    metrics = parse_listen("127.0.0.1:0")
    async with (
        running(settings, parse_listen("127.0.0.1:0"), metrics_listen=metrics) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        _, before = await scrape(sidecar)
        assert value(before, "pdsidecar_grpc_server_handled_total", **GET, grpc_code="OK") == 0
        stub = pb_grpc.CredentialsServiceStub(channel)
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        for _ in range(5):
            await stub.GetCredentials(request)
        missing = get_request("apn_doesnotexist", "notion")
        assert (await error_of(stub.GetCredentials(missing))).reason == "ACCOUNT_NOT_FOUND"
        # Asked again at once: answered from the not-found memory, not from Pipedream.
        assert (await error_of(stub.GetCredentials(missing))).reason == "ACCOUNT_NOT_FOUND"
        text, after = await scrape(sidecar)

    assert value(after, "pdsidecar_grpc_server_handled_total", **GET, grpc_code="OK") == 5
    assert value(after, "pdsidecar_grpc_server_handled_total", **GET, grpc_code="NOT_FOUND") == 2
    assert value(after, "pdsidecar_grpc_server_handling_seconds_count", **GET) == 7
    assert value(after, "pdsidecar_grpc_server_handling_seconds_bucket", **GET, le="+Inf") == 7
    assert value(after, "pdsidecar_grpc_server_handling_seconds_sum", **GET) > 0
    # The first call fetched, the next four were answered from the cache (or its memo).
    assert value(after, "pdsidecar_cache_misses_total") == 2
    assert value(after, "pdsidecar_cache_hits_total") >= 1
    assert value(after, "pdsidecar_cache_entries") == 1
    assert value(after, "pdsidecar_cache_not_found_hits_total") == 1
    for quiet in ("refetches", "withdrawn", "refused"):
        assert value(after, f"pdsidecar_cache_{quiet}_total") == 0
    assert value(after, "pdsidecar_upstream_requests_total", route="token", status="200") == 1
    assert value(after, "pdsidecar_upstream_requests_total", route="account", status="200") == 1
    assert value(after, "pdsidecar_upstream_requests_total", route="account", status="404") == 1
    assert value(after, "pdsidecar_token_refreshes_total", connection="default", result="ok") == 1
    expiry = value(after, "pdsidecar_token_expiry_seconds", connection="default")
    assert 3500 < expiry <= 3600
    assert "process_cpu_seconds_total" in text
    # No label holds an account id, and no value a secret.
    assert DEMO_NOTION_ACCOUNT_ID not in text and "apn_doesnotexist" not in text
    assert all(secret not in text for secret in emulator.state.secret_values())


async def test_failed_token_requests_and_coalesced_waits(
    settings: Settings, emulator: Emulator
) -> None:
    metrics = parse_listen("127.0.0.1:0")
    emulator.state.set_status_fault("token", 503)
    async with (
        running(settings, parse_listen("127.0.0.1:0"), metrics_listen=metrics) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        error = await error_of(stub.RefreshToken(pb.RefreshTokenRequest()))
        assert error.reason == "UPSTREAM_UNAVAILABLE"
        emulator.state.clear_faults()
        emulator.state.set_latency(0.2, route="account")
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", project_id=DEMO_PROJECT_ID)
        await asyncio.sleep(0.1)  # past the failed refresh's backoff
        await asyncio.gather(*(stub.GetCredentials(request) for _ in range(4)))
        _, samples = await scrape(sidecar)
    failed = value(
        samples, "pdsidecar_token_refreshes_total", connection="default", result="failed"
    )
    assert failed == 1
    assert value(samples, "pdsidecar_upstream_requests_total", route="token", status="503") == 3
    assert value(samples, "pdsidecar_cache_coalesced_waits_total") == 3
    code = {"grpc_code": "UNAVAILABLE", "grpc_method": "RefreshToken"}
    assert (
        value(
            samples,
            "pdsidecar_grpc_server_handled_total",
            grpc_service="pdsidecar.v1.CredentialsService",
            **code,
        )
        == 1
    )


def test_routes_are_bounded() -> None:
    base = "http://127.0.0.1/v1"
    assert route_of(httpx.URL(f"{base}/oauth/token")) == "token"
    assert route_of(httpx.URL(f"{base}/connect/proj_x/accounts")) == "list"
    assert route_of(httpx.URL(f"{base}/connect/proj_x/accounts/apn_1?x=1")) == "account"
    assert route_of(httpx.URL(f"{base}/anything/else")) == "other"
