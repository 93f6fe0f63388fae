"""OpenTelemetry tracing: spans reach an OTLP collector (a fake one on loopback)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID

from pdsidecar.config.listen import parse_listen
from pdsidecar.observe.tracing import setup_tracing
from pdsidecar.secret import Secret
from pdsidecar.settings import Settings
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support import exercised
from tests.support.ci import require
from tests.support.requests import error_of, get_request
from tests.support.sidecars import API_TOKEN, running

# The otel extra is part of dev, which CI installs: there a missing one fails the run.
require("opentelemetry.sdk", "the otel extra (pip install -e '.[otel]') is not installed")
from opentelemetry.proto.collector.trace.v1 import (  # noqa: E402 (after the check)
    trace_service_pb2,
    trace_service_pb2_grpc,
)

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Any] = []

    async def Export(self, request: Any, context: Any) -> Any:
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    server = grpc.aio.server()
    servicer = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"http://127.0.0.1:{port}"
    await server.stop(0)


def test_tracing_is_off_without_an_endpoint() -> None:
    assert setup_tracing({}) is None


async def test_rpcs_become_server_spans(
    settings: Settings, collector: tuple[Collector, str]
) -> None:
    spans, endpoint = collector
    tracing = setup_tracing(exercised.env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}))
    assert tracing is not None
    async with (
        running(settings, parse_listen("127.0.0.1:0"), tracing=tracing) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        parent = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
        await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"), metadata=parent)
        await error_of(stub.GetCredentials(get_request("apn_missing1", "notion")))
    # Stopping the sidecar flushed the spans to the collector.
    names = [span.name for span in spans.spans]
    assert names.count("pdsidecar.v1.CredentialsService/GetCredentials") == 2
    first, second = spans.spans
    assert first.trace_id.hex() == TRACE_ID, "the caller's traceparent is the parent"
    attributes = {a.key: a.value for a in second.attributes}
    assert attributes["rpc.system"].string_value == "grpc"
    assert attributes["rpc.grpc.status_code"].int_value == grpc.StatusCode.NOT_FOUND.value[0]
    assert second.status.code == 2  # ERROR
    assert all("apn_" not in str(span) for span in spans.spans), "no request fields in spans"


async def test_refused_calls_make_no_spans(
    settings: Settings, collector: tuple[Collector, str]
) -> None:
    spans, endpoint = collector
    tracing = setup_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert tracing is not None
    guarded = dataclasses.replace(settings, api_token=Secret(API_TOKEN))
    refused_trace = "0af7651916cd43dd8448eb211c80319c"
    async with (
        running(guarded, parse_listen("127.0.0.1:0"), tracing=tracing) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        parent = (("traceparent", f"00-{refused_trace}-00f067aa0ba902b7-01"),)
        for _ in range(5):
            error = await error_of(stub.GetCredentials(request, metadata=parent))
            assert error.reason == "UNAUTHENTICATED"
        allowed = (("authorization", f"Bearer {API_TOKEN}"),)
        await stub.GetCredentials(request, metadata=allowed)
    assert [span.trace_id.hex() == refused_trace for span in spans.spans] == [False]
