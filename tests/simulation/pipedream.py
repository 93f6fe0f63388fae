"""Pipedream in the simulation: the emulator's model, answered in-process through httpx.

The sidecars' HTTP client gets :attr:`SimPipedream.transport` (an ``httpx.MockTransport``):
requests never touch a socket; they are answered from an
:class:`~pdsidecar_emulator.EmulatorState` (clients, tokens, accounts, rotations)
on the simulation's clock. Only the two routes the tier uses are served: the token
and one account. Account requests are counted per account: every request, and the
reads Pipedream answered (200). Faults apply to the account route: a status
(429 with Retry-After, 500) and a latency, each until a virtual time.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Final

import httpx
from pdsidecar_emulator import ENVIRONMENTS, EmulatorState

_ACCOUNT: Final = re.compile(r"/v1/connect/([^/]+)/accounts/([^/]+)")


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


class SimPipedream:
    def __init__(self, state: EmulatorState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self._loop = loop
        self.requests: Counter[str] = Counter()  # account requests, by account id
        self.reads: Counter[str] = Counter()  # of them answered 200
        self.tokens = 0
        self.status: int | None = None  # injected on the account route, until fault_until
        self.retry_after = 5
        self.fault_until = 0.0
        self.latency = 0.0  # seconds per account request, until latency_until
        self.latency_until = 0.0
        self.transport = httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/oauth/token":
            return self._token(request)
        match = _ACCOUNT.fullmatch(path)
        if request.method != "GET" or match is None:
            return _json(404, {"error": "not simulated"})
        account_id = match.group(2)
        self.requests[account_id] += 1
        now = self._loop.time()
        if self.latency > 0 and now < self.latency_until:
            await asyncio.sleep(self.latency)
        if self.status is not None and self._loop.time() < self.fault_until:
            headers = {"Retry-After": str(self.retry_after)} if self.status == 429 else None
            return _json(self.status, {"error": "injected"}, headers)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.state.token_valid(token.strip()):
            return _json(401, {"error": "unauthorized"})
        environment = request.headers.get("x-pd-environment", "")
        if environment not in ENVIRONMENTS:
            return _json(400, {"error": "environment"})
        account = self.state.get_account(match.group(1), account_id, environment)
        if account is None:
            return _json(404, {"error": "record not found"})
        self.reads[account_id] += 1
        include = request.url.params.get("include_credentials", "false") == "true"
        return _json(200, account.to_json(include))

    def _token(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        issued = self.state.issue_token(str(body.get("client_id")), str(body.get("client_secret")))
        if issued is None:
            return _json(401, {"error": "invalid_client"})
        self.tokens += 1
        return _json(
            200,
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "created_at": int(issued.created_at),
            },
        )
