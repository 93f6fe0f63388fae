"""Two sync workers against the emulator's fake source API, for the long-sync test and bench.

A worker calls the source every ``every`` seconds in its own thread, with the blocking
client, until ``stop`` is set:

- :func:`watching_worker` reads ``RefreshableCredentials.access_token`` before each call;
- :func:`caching_worker` is the usual code: GetCredentials once, keep the token, and on a
  401 ask again with ``rejected_access_token``.

With the emulator rotating the token, the first should see no 401 at all; the second sees
one per token that died under it.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

from pdsidecar_client import CredentialsClient


@dataclass
class Tally:
    ok: int = 0
    unauthorized: int = 0
    tokens: list[str] = field(default_factory=list)  # each new one, in order of first use

    def count(self, status: int, token: str) -> None:
        if not self.tokens or self.tokens[-1] != token:
            self.tokens.append(token)
        if status == 200:
            self.ok += 1
        elif status == 401:
            self.unauthorized += 1
        else:
            raise AssertionError(f"the source answered {status}")


def call_source(url: str, token: str) -> int:
    """The status the emulator's source API answers ``token`` with."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def watching_worker(target: str, source: str, stop: threading.Event, every: float) -> Tally:
    tally = Tally()
    with (
        CredentialsClient(target) as client,
        client.refreshable_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion") as creds,
    ):
        while not stop.is_set():
            token = creds.access_token
            status = call_source(source, token)
            tally.count(status, token)
            if status == 401:
                creds.reject(token)
            stop.wait(every)
    return tally


def caching_worker(target: str, source: str, stop: threading.Event, every: float) -> Tally:
    tally = Tally()
    with CredentialsClient(target) as client:
        answer = client.get_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")
        token = answer.credentials["access_token"]
        while not stop.is_set():
            status = call_source(source, token)
            tally.count(status, token)
            if status == 401:
                answer = client.get_credentials(
                    DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=token
                )
                token = answer.credentials["access_token"]
            stop.wait(every)
    return tally
