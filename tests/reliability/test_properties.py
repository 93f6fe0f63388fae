"""Property tests: whatever a caller sends, the answer is OK or a row of the error table.

Requests are generated (valid and malformed fields, unknown enum values, huge lists, raw
bytes that are not a message at all) and sent to a real ``pdsidecar serve --emulator``
process. No answer may be UNKNOWN or INTERNAL, and the process must still be serving at
the end. Every error carries the rich status the error table promises (ErrorInfo,
RetryInfo when retryable, BadRequest for bad input).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st
from pdsidecar_emulator import (
    DEMO_CODA_ACCOUNT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_DEV_NOTION_ACCOUNT_ID,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_UNHEALTHY_ACCOUNT_ID,
    DEMO_USER_ALICE,
    DEMO_USER_BOB,
)

from harness.ports import free_port
from pdsidecar.errors import DOMAIN, ERROR_TABLE
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

ALLOWED = {grpc.StatusCode.OK} | {kind.code for kind in ERROR_TABLE.values()}
SERVICE = "/pdsidecar.v1.CredentialsService/"
EXAMPLES = settings(max_examples=200, deadline=None)
T = TypeVar("T", bound=Message)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[subprocess.Popen[bytes], grpc.Channel]]:
    """A sidecar process with its built-in emulator, and a channel to it."""
    target = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "pdsidecar", "serve", "--emulator", "--listen", target]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"],
        # Not a pipe: nobody reads it, and a full pipe would block the server.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield process, channel
    finally:
        channel.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


Outcome = tuple[grpc.StatusCode, status_pb2.Status | None]


def call(channel: grpc.Channel, method: str, request: Any) -> Outcome:
    """The status of one call, with its rich details; the raw form sends ``request`` bytes
    as they are."""
    raw = isinstance(request, bytes)
    stub = channel.unary_unary(
        SERVICE + method,
        request_serializer=None if raw else type(request).SerializeToString,
        response_deserializer=None,
    )
    try:
        stub(request, timeout=20)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        return code, rpc_status.from_call(error)  # type: ignore[arg-type]
    return grpc.StatusCode.OK, None


def anything(max_size: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


account_ids = st.one_of(
    st.sampled_from(
        [
            DEMO_NOTION_ACCOUNT_ID,
            DEMO_SLACK_ACCOUNT_ID,
            DEMO_CODA_ACCOUNT_ID,
            DEMO_DEAD_ACCOUNT_ID,
            DEMO_UNHEALTHY_ACCOUNT_ID,
            DEMO_GDRIVE_ACCOUNT_ID,
            DEMO_DEV_NOTION_ACCOUNT_ID,
        ]
    ),
    st.from_regex(r"apn_[A-Za-z0-9]{1,16}", fullmatch=True),
    anything(80),
)
project_ids = st.one_of(
    st.just(DEMO_PROJECT_ID), st.from_regex(r"proj_[A-Za-z0-9]{1,12}", fullmatch=True), anything(40)
)
sources = st.one_of(
    st.sampled_from(
        ["notion", "slack", "coda", "google_drive", "github", "jira", "outlook_mail", "nope"]
    ),
    anything(70),
)
field_names = st.lists(
    st.one_of(
        st.sampled_from(
            ["access_token", "refresh_token", "client_id", "client_secret", "api_key", "x"]
        ),
        anything(70),
    ),
    max_size=40,
)
environments = st.one_of(st.sampled_from([0, 1, 2]), st.integers(-(2**31), 2**31 - 1))
users = st.one_of(st.sampled_from(["", DEMO_USER_ALICE, DEMO_USER_BOB]), anything(300))
connections = st.one_of(st.sampled_from(["", "default", "other"]), anything(80))


@st.composite
def account_refs(draw: st.DrawFn) -> pb.AccountRef:
    return pb.AccountRef(
        connection=draw(connections),
        project_id=draw(project_ids),
        account_id=draw(account_ids),
        environment=draw(environments),
        external_user_id=draw(users),
    )


get_requests = st.builds(
    pb.GetCredentialsRequest,
    account=st.one_of(st.none(), account_refs()),
    source=sources,
    required_fields=field_names,
    optional_fields=field_names,
    rejected_access_token=st.one_of(st.just(""), anything(60)),
)
validate_requests = st.builds(
    pb.ValidateAccountRequest,
    account=st.one_of(st.none(), account_refs()),
    source=sources,
    required_fields=field_names,
    optional_fields=field_names,
)
refresh_requests = st.builds(pb.RefreshTokenRequest, connection=connections, force=st.booleans())
list_requests = st.builds(
    pb.ListAccountsRequest,
    connection=connections,
    project_id=project_ids,
    environment=environments,
    source=st.one_of(st.just(""), sources),
    external_user_id=users,
    page_size=st.integers(-(2**31), 2**31 - 1),
    page_token=st.one_of(st.just(""), anything(3000)),
)


def details(status: status_pb2.Status, kind: type[T]) -> list[T]:
    found = []
    for packed in status.details:
        if packed.Is(kind.DESCRIPTOR):  # type: ignore[attr-defined]
            message = kind()
            packed.Unpack(message)  # type: ignore[arg-type]
            found.append(message)
    return found


def assert_allowed(outcome: Outcome, request: Any) -> None:
    """OK, or an error exactly as the error table describes it: one ErrorInfo in the
    pdsidecar domain whose reason is a row sent with this code, RetryInfo exactly when
    the row says retry, and the field violations of a bad request."""
    code, status = outcome
    if code is grpc.StatusCode.OK:
        return
    where = f"{code.name} for {request!r}"
    assert code in ALLOWED, where
    assert status is not None, f"{where}: no google.rpc.Status details"
    assert status.code == code.value[0] and status.message, where
    (info,) = details(status, error_details_pb2.ErrorInfo)
    assert info.domain == DOMAIN, where
    kind = ERROR_TABLE.get(info.reason)
    assert kind is not None, f"{where}: reason {info.reason!r} is not in the error table"
    assert kind.code == code, f"{where}: {info.reason} belongs with {kind.code.name}"
    retry = details(status, error_details_pb2.RetryInfo)
    assert len(retry) == (1 if kind.retryable else 0), where
    if info.reason == "INVALID_REQUEST":
        (bad,) = details(status, error_details_pb2.BadRequest)
        assert bad.field_violations, where
        assert all(v.field and v.description for v in bad.field_violations), where


@EXAMPLES
@given(request=get_requests)
def test_get_credentials_answers_from_the_error_table(served: Any, request: Any) -> None:
    assert_allowed(call(served[1], "GetCredentials", request), request)


@EXAMPLES
@given(request=validate_requests)
def test_validate_account_answers_from_the_error_table(served: Any, request: Any) -> None:
    assert_allowed(call(served[1], "ValidateAccount", request), request)


@EXAMPLES
@given(request=refresh_requests)
def test_refresh_token_answers_from_the_error_table(served: Any, request: Any) -> None:
    assert_allowed(call(served[1], "RefreshToken", request), request)


@EXAMPLES
@given(request=list_requests)
def test_list_accounts_answers_from_the_error_table(served: Any, request: Any) -> None:
    assert_allowed(call(served[1], "ListAccounts", request), request)


@EXAMPLES
@given(
    method=st.sampled_from(["GetCredentials", "ValidateAccount", "RefreshToken", "ListAccounts"]),
    payload=st.binary(max_size=300),
)
def test_bytes_that_are_not_a_request_answer_from_the_error_table(
    served: Any, method: str, payload: bytes
) -> None:
    assert_allowed(call(served[1], method, payload), payload)


def test_the_server_is_still_serving_after_all_that(served: Any) -> None:
    process, channel = served
    assert process.poll() is None
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    response = pb_grpc.CredentialsServiceStub(channel).GetCredentials(
        pb.GetCredentialsRequest(
            account=pb.AccountRef(project_id=DEMO_PROJECT_ID, account_id=DEMO_NOTION_ACCOUNT_ID),
            source="notion",
        ),
        timeout=10,
    )
    assert response.credentials["access_token"]
