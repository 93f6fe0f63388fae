"""The emulator's control surface: JSON routes under ``/_emulator/`` for tests and benchmarks.

Account routes take an ``environment`` query (default production). Errors: ValueError and
TypeError answer 400, KeyError 404, always as ``{"error": "..."}``.

- ``GET /_emulator/stats``, ``POST /_emulator/stats/reset``: counters and the in-flight gauge.
- ``GET|POST|DELETE /_emulator/faults``: POST {route, status, count, probability, retry_after,
  message, latency, stall, stall_probability, seed}, each group optional; DELETE takes a
  ``route`` query.
- ``POST /_emulator/tokens/revoke``; ``POST /_emulator/tokens/lifetime`` {expires_in}.
- ``POST /_emulator/budget`` {reads (null: off), window}: Pipedream's account-read budget.
- ``POST /_emulator/clients`` {client_id, client_secret}; ``DELETE /_emulator/clients/{id}``.
- ``POST /_emulator/accounts`` (see ``_add_account``); ``POST /_emulator/accounts/generate``
  {n, app, project_id, environment, external_id} -> {ids}.
- ``PATCH|DELETE /_emulator/accounts/{project_id}/{account_id}``, ``POST .../rotate`` ->
  {access_token}.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .models import DEFAULT_PROJECT_ID, JSON, ROUTES, Account, app_for, fake_credentials
from .state import EmulatorState

STATE_KEY = web.AppKey("state", EmulatorState)
ControlHandler = Callable[[web.Request, EmulatorState, JSON], Any]


def _control(handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """JSON in, JSON out; ValueError/TypeError -> 400, KeyError -> 404."""

    async def serve(request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            return web.json_response(handler(request, request.app[STATE_KEY], body))
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    return serve


def _need(body: JSON, name: str) -> Any:
    if name not in body:
        raise ValueError(f"{name} is required")  # not KeyError: that would answer 404
    return body[name]


def _target(request: web.Request) -> tuple[str, str, str]:
    info, env = request.match_info, request.query.get("environment", "production")
    return info["project_id"], info["account_id"], env


def _set_faults(_: web.Request, state: EmulatorState, body: JSON) -> JSON:
    """Each group present in the body is applied: status (with count, probability,
    retry_after, message), latency, stall (with stall_probability), seed."""
    route = body.get("route", "all")
    if route != "all" and route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES} or 'all'")
    if "status" in body:
        retry_after = body.get("retry_after")
        state.set_status_fault(
            route,
            int(_need(body, "status")),
            count=None if body.get("count") is None else int(body["count"]),
            probability=float(body.get("probability", 1.0)),
            retry_after=None if retry_after is None else str(retry_after),
            message=None if body.get("message") is None else str(body["message"]),
        )
    if "latency" in body:
        state.set_latency(float(body["latency"]), route)
    if "stall" in body:
        state.set_stall(float(body["stall"]), float(body.get("stall_probability", 1.0)), route)
    if "seed" in body:
        state.reseed(None if body["seed"] is None else int(body["seed"]))
    return state.faults_json()


def _clear_faults(request: web.Request, state: EmulatorState, _: JSON) -> JSON:
    state.clear_faults(request.query.get("route", "all"))  # type: ignore[arg-type]
    return state.faults_json()


# served_as: a JSON body the account routes answer instead of the account (odd answers).
_ACCOUNT_FIELDS = {
    "name",
    "external_id",
    "healthy",
    "dead",
    "error",
    "credentials",
    "oauth_app_id",
    "served_as",
}
_CREATE_ONLY = {"app", "id", "project_id", "environment"}


def _changes(state: EmulatorState, body: JSON, allowed: set[str]) -> dict[str, Any]:
    """Account field changes from a body; ``expires_in`` is seconds from now, or null."""
    unknown = set(body) - allowed - {"expires_in"}
    if unknown:
        raise ValueError(f"unknown or read-only account fields {sorted(unknown)}")
    changes = {name: body[name] for name in _ACCOUNT_FIELDS & set(body)}
    if "expires_in" in body:
        expires_in = body["expires_in"]
        changes["expires_at"] = None if expires_in is None else state.clock() + float(expires_in)
    return changes


def _add_account(_: web.Request, state: EmulatorState, body: JSON) -> JSON:
    """Body: app (slug), optional id, project_id, environment, external_id, name, healthy,
    dead, error, expires_in, oauth_app_id, served_as and credentials (absent: fresh fake ones;
    null: default OAuth)."""
    if not isinstance(body.get("app"), str):
        raise ValueError("app (a slug) is required")
    changes = _changes(state, body, _ACCOUNT_FIELDS | _CREATE_ONLY)
    app, user = app_for(body["app"]), str(body.get("external_id", "user-emulated"))
    account = Account(
        str(body.get("id") or "apn_" + secrets.token_hex(5)),
        app,
        user,
        project_id=str(body.get("project_id", DEFAULT_PROJECT_ID)),
        environment=str(body.get("environment", "production")),
        credentials=fake_credentials(app, user),
        created_at=state.clock(),
    )
    for name, value in changes.items():
        setattr(account, name, value)
    account.updated_at = account.created_at
    return state.put_account(account).to_json(include_credentials=True)


def _update_account(request: web.Request, state: EmulatorState, body: JSON) -> JSON:
    changes = _changes(state, body, _ACCOUNT_FIELDS)
    return state.update_account(*_target(request), **changes).to_json(include_credentials=True)


def _generate(_: web.Request, state: EmulatorState, body: JSON) -> JSON:
    ids = state.add_generated_accounts(
        int(body.get("n", 1)),
        app=str(body.get("app", "notion")),
        project_id=str(body.get("project_id", DEFAULT_PROJECT_ID)),
        environment=str(body.get("environment", "production")),
        external_id=body.get("external_id"),
    )
    return {"ids": ids}


def _reset_stats(_: web.Request, state: EmulatorState, __: JSON) -> JSON:
    state.reset_stats()
    return state.stats()


def _token_lifetime(_: web.Request, state: EmulatorState, body: JSON) -> JSON:
    state.set_token_lifetime(int(_need(body, "expires_in")))
    return {"expires_in": state.token_lifetime}


def _add_client(_: web.Request, state: EmulatorState, body: JSON) -> JSON:
    client = state.add_client(str(_need(body, "client_id")), str(_need(body, "client_secret")))
    return {"client_id": client.client_id}


def _budget(_: web.Request, state: EmulatorState, body: JSON) -> JSON:
    reads = body.get("reads", state.read_budget)
    window = float(body.get("window", state.read_window))
    state.set_read_budget(None if reads is None else int(reads), window)
    return {"reads": state.read_budget, "window": state.read_window}


def add_control_routes(app: web.Application) -> None:
    """Register the control routes; they act on ``app[STATE_KEY]``."""
    r, c = app.router, _control
    r.add_get("/_emulator/stats", c(lambda _r, s, _b: s.stats()))
    r.add_post("/_emulator/stats/reset", c(_reset_stats))
    r.add_get("/_emulator/faults", c(lambda _r, s, _b: s.faults_json()))
    r.add_post("/_emulator/faults", c(_set_faults))
    r.add_delete("/_emulator/faults", c(_clear_faults))
    r.add_post("/_emulator/tokens/revoke", c(lambda _r, s, _b: {"revoked": s.revoke_tokens()}))
    r.add_post("/_emulator/tokens/lifetime", c(_token_lifetime))
    r.add_post("/_emulator/budget", c(_budget))
    r.add_post("/_emulator/clients", c(_add_client))
    r.add_delete(
        "/_emulator/clients/{client_id}",
        c(lambda rq, s, _b: {"removed": s.remove_client(rq.match_info["client_id"])}),
    )
    r.add_post("/_emulator/accounts", c(_add_account))
    r.add_post("/_emulator/accounts/generate", c(_generate))
    account = "/_emulator/accounts/{project_id}/{account_id}"
    r.add_patch(account, c(_update_account))
    r.add_delete(account, c(lambda rq, s, _b: {"removed": s.remove_account(*_target(rq))}))
    r.add_post(
        account + "/rotate",
        c(lambda rq, s, _b: {"access_token": s.rotate_access_token(*_target(rq))}),
    )
