"""``/metrics`` answers in the format the scraper asks for; the address is in the start log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as text_format

from pdsidecar.config.listen import parse_listen
from pdsidecar.settings import Settings
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio

# What Prometheus itself sends when it scrapes.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def test_openmetrics_when_asked_text_otherwise(settings: Settings) -> None:
    metrics = parse_listen("127.0.0.1:0")
    async with running(settings, parse_listen("127.0.0.1:0"), metrics_listen=metrics) as sidecar:
        assert sidecar.metrics is not None
        url = f"http://127.0.0.1:{sidecar.metrics.port}/metrics"
        async with httpx.AsyncClient() as http:
            negotiated = await http.get(url, headers={"Accept": PROMETHEUS_ACCEPT})
            plain = await http.get(url)
        assert negotiated.headers["content-type"].startswith("application/openmetrics-text")
        assert negotiated.text.rstrip().endswith("# EOF")
        names = {family.name for family in openmetrics(negotiated.text)}
        assert "pdsidecar_grpc_server_handled" in names
        assert plain.headers["content-type"].startswith("text/plain")
        assert "# EOF" not in plain.text
        assert "pdsidecar_cache_entries" in {family.name for family in text_format(plain.text)}


async def test_the_metrics_address_is_logged_at_start(serve: Any) -> None:
    process = serve("--emulator", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
    message = await process.wait_for(r"Prometheus metrics at http://127\.0\.0\.1:\d+/metrics")
    url = message.removeprefix("Prometheus metrics at ")
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200 and "pdsidecar_cache_entries" in response.text
