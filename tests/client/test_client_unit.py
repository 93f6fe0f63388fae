"""The blocking client over ``grpc_testing``: what it sends and how it reads what comes back.

No server, no sockets: each test plays the sidecar's side of one call (take the call,
answer it) while the client waits in a thread. Covered: the request an ``AccountRef``
(or the same values spelled out) becomes, the API token and deadline and
wait-for-ready on every call, the rich error details (ErrorInfo, RetryInfo,
BadRequest), errors the library leaves to the caller (no retry of its own), and
account listing as lazy pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import grpc_testing
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from pdsidecar_client import AccountRef, CredentialsClient, CredentialsError
from pdsidecar_client._requests import CHANNEL_OPTIONS
from pdsidecar_client.v1 import credentials_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["CredentialsService"]
GET = SERVICE.methods_by_name["GetCredentials"]
LIST = SERVICE.methods_by_name["ListAccounts"]
TOKEN = "unit-test-api-token-0123456789"
T = TypeVar("T")


class RecordingChannel(grpc.Channel):
    """``grpc_testing``'s channel, recording each call's ``timeout`` and ``wait_for_ready``
    (its callables predate ``wait_for_ready`` and do not take it)."""

    def __init__(self) -> None:
        self.fake = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
        self.options: list[dict[str, Any]] = []

    def _recorded(self, inner: Any) -> Callable[..., Any]:
        def call(request: Any, timeout: Any = None, metadata: Any = None, **options: Any) -> Any:
            self.options.append({"timeout": timeout, **options})
            return inner(request, timeout=timeout, metadata=metadata)

        return call

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._recorded(self.fake.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._recorded(self.fake.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.fake.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.fake.stream_stream(method, *args, **kwargs)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self.fake.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self.fake.unsubscribe(callback)

    def close(self) -> None:
        self.fake.close()


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def details(*messages: Any, code: grpc.StatusCode, message: str) -> tuple[tuple[str, bytes]]:
    """The ``grpc-status-details-bin`` trailer of a rich status carrying ``messages``."""
    packed = []
    for detail in messages:
        wrapped = any_pb2.Any()
        wrapped.Pack(detail)
        packed.append(wrapped)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def answered(future: Future[T]) -> T:
    return future.result(timeout=5)


def failed(future: Future[Any]) -> CredentialsError:
    with pytest.raises(CredentialsError) as caught:
        future.result(timeout=5)
    return caught.value


def test_an_account_ref_and_its_values_spelled_out_make_the_same_request(
    channel: RecordingChannel, pool: ThreadPoolExecutor
) -> None:
    client = CredentialsClient(channel=channel)
    ref = AccountRef(
        "proj_x", "apn_x", "notion", environment="development", required_fields=("access_token",)
    )
    requests = []
    for call in (
        lambda: client.get_credentials(ref),
        lambda: client.get_credentials(
            "proj_x", "apn_x", "notion", environment="development", required_fields=["access_token"]
        ),
    ):
        future = pool.submit(call)
        _, request, rpc = channel.fake.take_unary_unary(GET)
        rpc.terminate(pb.GetCredentialsResponse(), (), grpc.StatusCode.OK, "")
        answered(future)
        requests.append(request)
    assert requests[0] == requests[1]
    assert requests[0].account.environment == pb.ENVIRONMENT_DEVELOPMENT
    assert list(requests[0].required_fields) == ["access_token"]
    with pytest.raises(TypeError):
        client.get_credentials(ref, "apn_other")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="environment"):
        AccountRef("proj_x", "apn_x", "notion", environment="staging")


def test_every_call_carries_the_token_the_deadline_and_wait_for_ready(
    channel: RecordingChannel, pool: ThreadPoolExecutor
) -> None:
    client = CredentialsClient(channel=channel, api_token=TOKEN, timeout=3.0)
    for timeout in (None, 0.5):
        future = pool.submit(client.get_credentials, "proj_x", "apn_x", "notion", timeout=timeout)
        metadata, _, rpc = channel.fake.take_unary_unary(GET)
        rpc.terminate(pb.GetCredentialsResponse(), (), grpc.StatusCode.OK, "")
        answered(future)
        assert ("authorization", f"Bearer {TOKEN}") in metadata
    assert [o["timeout"] for o in channel.options] == [3.0, 0.5]
    assert all(o["wait_for_ready"] is True for o in channel.options)
    # Without a token no authorization header; wait_for_ready off when asked.
    bare = CredentialsClient(channel=channel, wait_for_ready=False)
    future = pool.submit(bare.get_credentials, "proj_x", "apn_x", "notion")
    metadata, _, rpc = channel.fake.take_unary_unary(GET)
    rpc.terminate(pb.GetCredentialsResponse(), (), grpc.StatusCode.OK, "")
    answered(future)
    assert not any(key == "authorization" for key, _ in metadata)
    assert channel.options[-1]["wait_for_ready"] is False


def test_rich_error_details_become_the_typed_error(
    channel: RecordingChannel, pool: ThreadPoolExecutor
) -> None:
    client = CredentialsClient(channel=channel)
    code, message = grpc.StatusCode.INVALID_ARGUMENT, "account.project_id is malformed"
    info = error_details_pb2.ErrorInfo(
        reason="INVALID_REQUEST", domain="pdsidecar", metadata={"field": "account.project_id"}
    )
    foreign = error_details_pb2.ErrorInfo(reason="SOMETHING_ELSE", domain="elsewhere")
    bad = error_details_pb2.BadRequest(
        field_violations=[{"field": "account.project_id", "description": "want proj_..."}]
    )
    future = pool.submit(client.get_credentials, "nope", "apn_x", "notion")
    _, _, rpc = channel.fake.take_unary_unary(GET)
    rpc.terminate(None, details(foreign, info, bad, code=code, message=message), code, message)
    error = failed(future)
    assert (error.code, error.message, error.reason) == (code, message, "INVALID_REQUEST")
    assert error.metadata == {"field": "account.project_id"}
    assert [(v.field, v.description) for v in error.violations] == [
        ("account.project_id", "want proj_...")
    ]
    assert error.retry_after is None and error.hint is None


def test_rate_limited_is_left_to_the_caller_with_its_retry_delay(
    channel: RecordingChannel, pool: ThreadPoolExecutor
) -> None:
    client = CredentialsClient(channel=channel)
    code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, "Pipedream rate limited the sidecar"
    info = error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="pdsidecar")
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=7, nanos=500_000_000)
    )
    future = pool.submit(client.get_credentials, "proj_x", "apn_x", "notion")
    _, _, rpc = channel.fake.take_unary_unary(GET)
    rpc.terminate(None, details(info, retry, code=code, message=message), code, message)
    # One answer ends the call: the library does not retry it (a retry would wait here).
    error = failed(future)
    assert (error.reason, error.retry_after) == ("RATE_LIMITED", 7.5)
    assert len(channel.options) == 1


def test_grpc_retries_unavailable_on_unary_calls_through_the_service_config() -> None:
    options = dict(CHANNEL_OPTIONS)
    assert options["grpc.enable_retries"] == 1
    (method,) = json.loads(str(options["grpc.service_config"]))["methodConfig"]
    # The unary methods only: the always-current object reconnects its stream itself.
    assert {name["method"] for name in method["name"]} == {
        "GetCredentials",
        "ValidateAccount",
        "RefreshToken",
        "ListAccounts",
    }
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method["retryPolicy"]["maxAttempts"] == 3  # an absent sidecar said in ~0.3 s


def test_account_pages_are_fetched_one_at_a_time(
    channel: RecordingChannel, pool: ThreadPoolExecutor
) -> None:
    client = CredentialsClient(channel=channel)
    pages = client.account_pages("proj_x", page_size=2)
    tokens = []
    for index, next_token in enumerate(["t1", "t2", ""]):
        future = pool.submit(next, pages)
        _, request, rpc = channel.fake.take_unary_unary(LIST)
        tokens.append(request.page_token)
        accounts = [pb.AccountInfo(account_id=f"apn_{index}{n}") for n in range(2)]
        page = pb.ListAccountsResponse(accounts=accounts, next_page_token=next_token)
        rpc.terminate(page, (), grpc.StatusCode.OK, "")
        assert [a.account_id for a in answered(future).accounts] == [
            f"apn_{index}0",
            f"apn_{index}1",
        ]
        # The next page is asked for only when the caller steps past this one.
        assert len(channel.options) == index + 1
    assert tokens == ["", "t1", "t2"]
    with pytest.raises(StopIteration):
        next(pages)
