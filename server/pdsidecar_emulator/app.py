"""HTTP side of the Pipedream API emulator: aiohttp routes, the Emulator server, run_emulator.

Pipedream routes: ``POST /v1/oauth/token``, ``GET /v1/connect/{project_id}/accounts`` and
``GET /v1/connect/{project_id}/accounts/{account_id}``. Each one counts requests per status,
applies the route's injected faults (latency and stalls are waits on the event loop, so
concurrent requests wait concurrently, until the delay passes or the faults are cleared),
and the two account routes move the in-flight gauge.

The account route keeps Pipedream's budget (``EmulatorState.read_budget`` reads per project
per ``read_window`` seconds, 2,000 per 5 minutes by default): beyond it, 429 with Retry-After.

Control routes (JSON, no auth, loopback only) live under ``/_emulator/``: see control.py.
Nothing here logs: the access log is off, so neither tokens nor credentials reach a log.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any

from aiohttp import web

from .control import STATE_KEY, add_control_routes
from .models import ENVIRONMENTS, Route
from .seed import (
    DEMO_ACCOUNTS,
    DEMO_CLIENT_ID,
    DEMO_ENVIRONMENT,
    DEMO_PROJECT_ID,
    demo_state,
)
from .source import add_source_routes
from .state import DEFAULT_PAGE_SIZE, EmulatorState

Handler = Callable[[web.Request, EmulatorState], Awaitable[web.Response]]


def _error(status: int, message: str, retry_after: str | None = None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "injected fault"


def _instrument(route: Route, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
    gauge = route != "token"

    async def serve(request: web.Request) -> web.Response:
        state = request.app[STATE_KEY]
        if gauge:
            state.enter()
        try:
            plan = state.plan(route)
            if plan.delay > 0:
                await state.delay(route, plan.delay)
            if plan.status is not None:
                text = plan.message or _reason(plan.status)
                response = _error(plan.status, text, plan.retry_after)
            else:
                response = await handler(request, state)
        except Exception:  # not CancelledError: a request whose client left is not counted
            state.record(route, 500)
            raise
        finally:
            if gauge:
                state.leave()
        state.record(route, response.status)
        return response

    return serve


async def _token(request: web.Request, state: EmulatorState) -> web.Response:
    # Pipedream accepts JSON (the SDKs) and form bodies (Airweave).
    try:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
        else:
            body = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    except ValueError:
        return _error(400, "invalid_request")
    grant = body.get("grant_type")
    if grant != "client_credentials":
        return _error(400, "invalid_request" if grant is None else "unsupported_grant_type")
    client_id, client_secret = body.get("client_id"), body.get("client_secret")
    issued = None
    if isinstance(client_id, str) and isinstance(client_secret, str):
        issued = state.issue_token(client_id, client_secret)
    if issued is None:
        return _error(401, "invalid_client")
    return web.json_response(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "created_at": int(issued.created_at),
        }
    )


def _gate(request: web.Request, state: EmulatorState) -> web.Response | str:
    """The auth and environment checks of the account routes: an error or the environment."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not state.token_valid(token.strip()):
        return _error(401, "unauthorized")
    environment = request.headers.get("x-pd-environment")
    if environment not in ENVIRONMENTS:
        return _error(400, "x-pd-environment must be production or development")
    return environment


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("true", "1")


async def _account(request: web.Request, state: EmulatorState) -> web.Response:
    gate = _gate(request, state)
    if isinstance(gate, web.Response):
        return gate
    info = request.match_info
    wait = state.take_read(info["project_id"])
    if wait is not None:
        return _error(429, "rate limit exceeded", str(math.ceil(wait)))
    account = state.get_account(info["project_id"], info["account_id"], gate)
    if account is None:
        return _error(404, "record not found")
    return web.json_response(account.to_json(_flag(request, "include_credentials")))


async def _list(request: web.Request, state: EmulatorState) -> web.Response:
    gate = _gate(request, state)
    if isinstance(gate, web.Response):
        return gate
    q = request.query
    try:
        page, page_info = state.list_accounts(
            request.match_info["project_id"],
            gate,
            app=q.get("app"),
            external_user_id=q.get("external_user_id"),
            oauth_app_id=q.get("oauth_app_id"),
            limit=int(q.get("limit", DEFAULT_PAGE_SIZE)),
            after=q.get("after"),
            before=q.get("before"),
        )
    except ValueError as exc:
        return _error(400, str(exc))
    creds = _flag(request, "include_credentials")
    return web.json_response({"data": [a.to_json(creds) for a in page], "page_info": page_info})


def build_app(state: EmulatorState) -> web.Application:
    """The aiohttp application: Pipedream's routes plus the control routes (control.py)."""
    app = web.Application()
    app[STATE_KEY] = state
    r = app.router
    r.add_post("/v1/oauth/token", _instrument("token", _token))
    r.add_get("/v1/connect/{project_id}/accounts", _instrument("list", _list))
    r.add_get("/v1/connect/{project_id}/accounts/{account_id}", _instrument("account", _account))
    add_control_routes(app)
    add_source_routes(app)  # the fake source API and token rotation (source.py)
    return app


class Emulator:
    """The emulator server on loopback; embeddable in a running event loop."""

    def __init__(
        self, state: EmulatorState | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = state if state is not None else demo_state()
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve; with port 0 the bound port is in ``port`` and ``url`` afterwards."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        # No access log (no secrets in logs, less overhead); cancel handlers of vanished
        # clients so the in-flight gauge matches what the sidecar still waits for.
        runner = web.AppRunner(
            build_app(self.state), access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        try:
            # A large backlog so a burst of 1,000 new connections is not dropped and retried.
            await web.TCPSite(runner, self.host, self.port, backlog=4096).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("emulator not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def run_emulator(
    host: str = "127.0.0.1", port: int = 0, *, state: EmulatorState | None = None
) -> None:
    """Serve the demo emulator until cancelled; prints the URL and the demo ids (no secrets)."""
    async with Emulator(state, host, port) as emulator:
        print(f"pdsidecar emulator: Pipedream API on {emulator.url}", flush=True)
        print(
            f"  client_id {DEMO_CLIENT_ID} (client_secret: pdsidecar_emulator.DEMO_CLIENT_SECRET)"
            f"\n  project_id {DEMO_PROJECT_ID}, x-pd-environment {DEMO_ENVIRONMENT}",
            flush=True,
        )
        for account_id, app, user, note in DEMO_ACCOUNTS:
            print(f"  {account_id:<20} {app:<13} {user:<11} {note}", flush=True)
        await asyncio.Event().wait()
