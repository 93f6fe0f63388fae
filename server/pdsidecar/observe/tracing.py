"""OpenTelemetry tracing, when its packages are installed and an endpoint is set.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set.
Then, with the ``otel`` extra installed (``pip install 'pdsidecar[otel]'``),
each unary RPC becomes a SERVER span named after its method, a child of the
caller's ``traceparent`` when sent, exported over OTLP (gRPC, or HTTP when
``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`` and that exporter is
installed). The standard ``OTEL_*`` variables configure the exporter and the
resource; the service name defaults to ``pdsidecar``. Without the packages a
warning says so and the sidecar runs untraced. Spans carry method and status
code, never request fields.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc

from pdsidecar.observe.wrapping import Behavior, Context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)


class Tracing:
    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.wrapper = TracingWrapper(provider)

    async def shutdown(self) -> None:
        # Flushing talks to the collector synchronously: off the event loop.
        await asyncio.to_thread(self.provider.shutdown)


def setup_tracing(env: Mapping[str, str]) -> Tracing | None:
    """A tracer provider exporting to the configured endpoint, or None (tracing off)."""
    traces_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    endpoint = traces_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter: Any
        if protocol.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )

            # The generic endpoint is a base URL for OTLP/HTTP; the traces one is complete.
            url = traces_endpoint or endpoint.rstrip("/") + "/v1/traces"
            exporter = OTLPSpanExporter(endpoint=url)
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            exporter = GrpcSpanExporter(endpoint=endpoint)
    except ImportError as error:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off: %s is not installed "
            "(pip install 'pdsidecar[otel]')",
            error.name,
        )
        return None
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "pdsidecar"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing: exporting spans over OTLP (%s)", protocol)
    return Tracing(provider)


class TracingWrapper:
    """Wraps a unary method's behavior in a SERVER span (see observe/wrapping.py)."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("pdsidecar")

    def wrap(self, inner: Behavior, method: str) -> Behavior:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer = self._tracer
        service, _, name = method.lstrip("/").partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

        async def traced(request: Any, context: Context) -> Any:
            carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            with tracer.start_as_current_span(
                method.lstrip("/"),
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                answered = False
                try:
                    response = await inner(request, context)
                    answered = True
                    return response
                finally:
                    code = context.code() or (
                        grpc.StatusCode.OK if answered else grpc.StatusCode.UNKNOWN
                    )
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code is not grpc.StatusCode.OK:
                        span.set_status(Status(StatusCode.ERROR, code.name))

        return traced
