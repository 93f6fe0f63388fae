"""RefreshableCredentials alone: given the two callables it needs (open the stream, refetch),
no client, no channel. Streams are scripted; each test waits on events, not on time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from pdsidecar_client import CredentialsError, RefreshableCredentials
from pdsidecar_client.v1 import credentials_pb2 as pb
from tests.client.test_client_unit import details

END = object()  # a script's "the stream ends cleanly"


def value(token: str) -> pb.WatchCredentialsResponse:
    return pb.WatchCredentialsResponse(credentials={"access_token": token})


class Failed(grpc.RpcError):
    """A stream's end as grpc raises it: a code, a message, the rich status trailer."""

    def __init__(self, code: grpc.StatusCode, reason: str = "", retry: float | None = None):
        self._code, self._message = code, f"{code.name.lower()} for the test"
        messages: list[object] = []
        if reason:
            messages.append(error_details_pb2.ErrorInfo(reason=reason, domain="pdsidecar"))
        if retry is not None:
            delay = duration_pb2.Duration(nanos=int(retry * 1e9))
            messages.append(error_details_pb2.RetryInfo(retry_delay=delay))
        self._trailer = details(*messages, code=code, message=self._message)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, bytes]]:
        return self._trailer


class Script:
    """Streams whose messages the test sends, in the order the object opened them."""

    def __init__(self) -> None:
        self.streams: list[queue.Queue[object]] = []
        self.opened = threading.Semaphore(0)
        self.taken = 0

    def open(self) -> ScriptedCall:
        stream: queue.Queue[object] = queue.Queue()
        self.streams.append(stream)
        self.opened.release()
        return ScriptedCall(stream)

    def next_stream(self) -> queue.Queue[object]:
        """The next stream the object opens, once it has opened it."""
        assert self.opened.acquire(timeout=5)
        self.taken += 1
        return self.streams[self.taken - 1]


class ScriptedCall:
    def __init__(self, stream: queue.Queue[object]) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[pb.WatchCredentialsResponse]:
        while True:
            item = self.stream.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pb.WatchCredentialsResponse)
            yield item

    def cancel(self) -> bool:
        self.stream.put(Failed(grpc.StatusCode.CANCELLED))
        return True


def until(condition: Callable[[], bool]) -> None:
    """Wait, bounded, for what a background thread does (polls, no blind sleep)."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.005)


def start(script: Script, first: str, refetch: str = "unused") -> RefreshableCredentials:
    """The object, built while the first stream sends ``first``."""
    opener = threading.Thread(target=lambda: script.next_stream().put(value(first)))
    opener.start()
    creds = RefreshableCredentials(
        script.open,
        lambda _: pb.GetCredentialsResponse(credentials={"access_token": refetch}),
        timeout=5,
        name="apn_x",
    )
    opener.join()
    return creds


def test_an_account_problem_ends_the_watch_and_surfaces_on_the_next_read() -> None:
    script = Script()
    with start(script, "tok-a") as creds:
        assert creds.access_token == "tok-a"
        script.streams[0].put(Failed(grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_DEAD"))
        until(lambda: not creds.valid)
        with pytest.raises(CredentialsError) as caught:
            creds.access_token  # noqa: B018
        assert caught.value.reason == "ACCOUNT_DEAD" and not creds.valid
        assert not script.opened.acquire(blocking=False)  # never opened again


def test_a_dropped_stream_is_opened_again_and_readers_never_see_the_gap() -> None:
    script = Script()
    with start(script, "tok-a") as creds:
        first = script.streams[0]
        first.put(Failed(grpc.StatusCode.UNAVAILABLE, retry=0.01))
        second = script.next_stream()  # opened again after RetryInfo's delay
        assert creds.access_token == "tok-a"  # the last value meanwhile
        second.put(value("tok-b"))
        until(lambda: creds.access_token == "tok-b")
        assert creds.reconnects == 1


def test_reject_installs_the_refetched_value_and_a_late_rejected_one_does_not_win() -> None:
    script = Script()
    with start(script, "tok-a", refetch="tok-b") as creds:
        assert creds.reject("tok-a", timeout=5).access_token == "tok-b"
        stream = script.streams[0]
        stream.put(value("tok-a"))  # sent before the refetch, arriving after it
        stream.put(value("tok-b"))
        stream.put(END)
        script.next_stream()  # the clean end was read: everything before it was offered
        assert creds.access_token == "tok-b"
    with pytest.raises(CredentialsError) as caught:
        creds.access_token  # noqa: B018
    assert caught.value.code is grpc.StatusCode.CANCELLED  # closed
