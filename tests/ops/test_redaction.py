"""Redaction in a running ``pdsidecar serve``: secrets that callers put into log lines
come out as ``[REDACTED]``, in JSON and in text logs.

The process logs no secret by itself, so a test that only looks for leaks cannot tell
whether the redaction filter runs at all. Here a caller steers secrets into the log: the
API token as its ``x-request-id`` (every JSON line of the call carries it), and a client
secret and the Pipedream token as account ids (the retry line after an upstream 503 names
the account). The values are shaped so that no token pattern matches them: only the
values the sidecar registered with its redaction filter can catch them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import Emulator, IssuedToken

from harness.config import write_config
from pdsidecar.observe.logs import MASK, Redactor
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request

pytestmark = pytest.mark.anyio

# Letters only (no digits, one case): no pattern of the redactor matches these. The two
# account-id shaped ones pass request validation, so a caller can send them as ids.
API_TOKEN = "sidecar-api-token-for-the-redaction-test"
CLIENT_SECRET = "apn_clientsecretoftheredactionclient"
PIPEDREAM_TOKEN = "apn_pipedreamtokenissuedtothesidecar"
STEERED = (API_TOKEN, CLIENT_SECRET, PIPEDREAM_TOKEN)
RETRY_LINE = f"account lookup {MASK} failed (HTTP 503); retry"


def test_no_pattern_catches_these_secrets() -> None:
    """The premise: unregistered, each survives redaction as it is."""
    for secret in STEERED:
        assert Redactor().redact(f"x {secret} y") == f"x {secret} y"


def issue_chosen_token(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator hands out PIPEDREAM_TOKEN instead of a random token."""
    state, issue = emulator.state, emulator.state.issue_token

    def chosen(client_id: str, client_secret: str) -> IssuedToken | None:
        issued = issue(client_id, client_secret)
        if issued is None:
            return None
        del state.tokens[issued.access_token]
        state.tokens[PIPEDREAM_TOKEN] = dataclasses.replace(issued, access_token=PIPEDREAM_TOKEN)
        return state.tokens[PIPEDREAM_TOKEN]

    monkeypatch.setattr(state, "issue_token", chosen)


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_secrets_a_caller_steers_into_the_log_are_redacted(
    emulator: Emulator, serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    emulator.state.add_client("redaction-client", CLIENT_SECRET)
    issue_chosen_token(emulator, monkeypatch)
    config = write_config(
        tmp_path / "pd.toml", emulator.url, {"default": "redaction-client"},
        client_secret=CLIENT_SECRET,
    )  # fmt: skip
    process = serve(
        "--config", str(config), "--listen", "127.0.0.1:0", "--log-format", fmt,
        env={"PDSIDECAR_API_TOKEN": API_TOKEN},
    )  # fmt: skip
    (target,) = await process.bound()
    await process.wait_for("readiness: SERVING")  # it holds PIPEDREAM_TOKEN now
    assert PIPEDREAM_TOKEN in emulator.state.tokens
    emulator.state.set_status_fault("account", 503)
    metadata = (("authorization", f"Bearer {API_TOKEN}"), ("x-request-id", API_TOKEN))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        for account in (CLIENT_SECRET, PIPEDREAM_TOKEN):
            request = get_request(account, "notion")
            error = await error_of(stub.GetCredentials(request, metadata=metadata))
            assert error.reason == "UPSTREAM_UNAVAILABLE"

    text = "\n".join(process.lines())
    assert [s for s in STEERED if s in text] == []
    if fmt == "json":
        retries = [r for r in process.records() if r["message"].startswith(RETRY_LINE)]
        assert len(retries) >= 2, "each account id was masked in its retry line"
        assert {r.get("request_id") for r in retries} == {MASK}, "so was the request id"
    else:
        retries = [line for line in process.lines() if RETRY_LINE in line]
        assert len(retries) >= 2, "each account id was masked in its retry line"
