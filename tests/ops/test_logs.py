"""Structured JSON logs with request ids, and a redaction filter that removes secrets."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NOTION_ACCOUNT_ID,
    Emulator,
    EmulatorState,
)
from pdsidecar_emulator import demo_state as make_demo_state

from harness.config import write_config
from pdsidecar.observe import logs
from pdsidecar.observe.logs import MASK, JsonFormatter, Redactor, RequestIdFilter
from pdsidecar.secret import Secret
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request
from tests.support.sidecars import API_TOKEN

pytestmark = pytest.mark.anyio

ALNUM = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def record(msg: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("pdsidecar.test", logging.INFO, __file__, 1, msg, args, exc_info)


def shown(redactor: Redactor, rec: logging.LogRecord) -> str:
    redactor.filter(rec)
    return JsonFormatter().format(rec)


@given(secret=ALNUM.filter(lambda s: len(s) >= 8), before=ALNUM, after=ALNUM)
def test_a_known_secret_never_survives(secret: str, before: str, after: str) -> None:
    redactor = Redactor()
    redactor.remember(Secret(secret))
    text = shown(redactor, record("%s%s%s", before, secret, after))
    assert secret not in text


SECRET_FIELDS = ("access_token", "refresh_token", "client_secret", "api_token", "api_key")


def emulator_secrets(state: EmulatorState) -> set[str]:
    """Client secrets, issued API tokens and the secret credential fields (not client ids)."""
    values = {c.client_secret for c in state.clients.values()} | set(state.tokens)
    for account in state.iter_accounts():
        for name, value in (account.credentials or {}).items():
            if name.endswith(SECRET_FIELDS):
                values.add(str(value))
    return values


def test_every_emulator_secret_is_removed_from_message_args_traceback_and_request_id() -> None:
    """The sidecar registers its config secrets and the tokens it receives; source tokens
    and other token-shaped values are caught by pattern. Checked over many random seeds."""
    for seed in range(25):
        state = make_demo_state(seed=seed)
        for _ in range(3):
            issued = state.issue_token(next(iter(state.clients)), DEMO_CLIENT_SECRET)
            assert issued is not None
        redactor = Redactor()
        redactor.remember(Secret(DEMO_CLIENT_SECRET), Secret(API_TOKEN))
        secrets = emulator_secrets(state) | {API_TOKEN}
        assert len(secrets) > 10
        for secret in secrets:
            try:
                raise RuntimeError(f"upstream said {secret}")
            except RuntimeError as error:
                rec = record("value=%s and %r", secret, {"token": secret}, exc=error)
            rec.request_id = secret
            text = shown(redactor, rec)
            assert secret not in text, f"seed {seed}: {secret[:6]}... survived"
            assert MASK in text


@pytest.mark.parametrize(
    "line",
    [
        "authorization: Bearer abc.DEF-123_xyz",
        '{"access_token": "ya29.a0AfH6SMBx", "expires_in": 3600}',
        "client_secret=hunter2hunter2&grant_type=client_credentials",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl here",
        "slack xoxb-123456789012-abcdefABCDEF",
        "random q9Xk2L0vP7sYt4Rz8Wm1Na5B",
    ],
)
def test_token_shaped_strings_are_removed_without_being_known(line: str) -> None:
    text = Redactor().redact(line)
    assert MASK in text
    for piece in ("abc.DEF-123_xyz", "ya29.a0AfH6SMBx", "hunter2hunter2", "c2lnbmF0dXJl"):
        assert piece not in text
    assert "xoxb-123456789012" not in text and "q9Xk2L0vP7sYt4Rz8Wm1Na5B" not in text


def test_ordinary_lines_are_left_alone() -> None:
    for line in (
        "connection default: new Pipedream token, valid for 3600 s",
        "/pdsidecar.v1.CredentialsService/GetCredentials OK in 0.12 ms",
        "pdsidecar listening on unix:/run/pdsidecar/pdsidecar.sock, 127.0.0.1:50051",
        f"account lookup {DEMO_NOTION_ACCOUNT_ID} failed after 3 attempts (HTTP 503)",
    ):
        assert Redactor().redact(line) == line


def test_configure_writes_json_lines_with_request_ids_and_quiets_httpx() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        handler = logs.configure("debug", "json", stream=stream, force=True)
        assert handler is not None
        token = logs.REQUEST_ID.set("req-42")
        try:
            logging.getLogger("pdsidecar.test").info("hello %s", "world", extra={"peer": "unix:"})
        finally:
            logs.REQUEST_ID.reset(token)
        logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/v1/secret-url")
        assert logs.configure("info", "json") is None  # handlers exist: left alone
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    (line,) = stream.getvalue().splitlines()
    data = json.loads(line)
    assert data["message"] == "hello world" and data["level"] == "info"
    assert data["request_id"] == "req-42" and data["peer"] == "unix:"
    assert data["logger"] == "pdsidecar.test" and data["time"].endswith("Z")


def test_request_id_filter_keeps_an_explicit_id() -> None:
    rec = record("x")
    rec.request_id = "given"
    RequestIdFilter().filter(rec)
    assert rec.request_id == "given"


async def test_a_served_process_logs_json_with_request_ids_and_no_secret(
    emulator: Emulator, serve: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    process = serve(
        "--config", str(config), "--listen", "127.0.0.1:0", "--log-level", "debug",
        env={"PDSIDECAR_API_TOKEN": API_TOKEN},
    )  # fmt: skip
    (target,) = await process.bound()
    await process.wait_for("readiness: SERVING")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        metadata = (("authorization", f"Bearer {API_TOKEN}"), ("x-request-id", "trace-me-1"))
        await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"), metadata=metadata)
        emulator.state.set_status_fault("account", 503)
        missing = get_request("apn_other", "notion")
        await error_of(stub.GetCredentials(missing, metadata=metadata[:1]))
        await error_of(stub.GetCredentials(missing))  # no token: UNAUTHENTICATED
        await process.wait_for("UNAUTHENTICATED")
    records = process.records()
    assert len(records) == len(process.lines()), "every line is a JSON object"
    rpc = [r for r in records if r.get("grpc_method", "").endswith("/GetCredentials")]
    assert [r["grpc_code"] for r in rpc] == ["OK", "UNAVAILABLE", "UNAUTHENTICATED"]
    assert rpc[0]["request_id"] == "trace-me-1" and rpc[1]["request_id"] != "trace-me-1"
    assert all(r["level"] == "debug" for r in rpc)
    messages = [r["message"] for r in records if r["level"] == "info"]
    assert any("new Pipedream token" in m for m in messages), "a refresh is logged at info"
    assert any("Pipedream account request: 503" in m for m in messages), "so are upstream errors"
    assert not any(r["logger"].startswith(("httpx", "httpcore")) for r in records)
    text = "\n".join(process.lines())
    leaked = [s for s in emulator.state.secret_values() | {API_TOKEN} if s in text]
    assert not leaked
