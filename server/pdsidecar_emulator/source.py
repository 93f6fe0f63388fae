"""A fake source API beside the emulator, and the control routes of token rotation.

``GET /source/v1/users/me`` stands for any call a sync worker makes to the
source (Notion's own "who am I"): with ``Authorization: Bearer <token>`` it
answers 200 while the token is live (see rotation.py), else 401, and counts
both (``GET /_emulator/source/stats``).

Control (JSON, loopback, like control.py):

- ``POST /_emulator/accounts/{project_id}/{account_id}/rotation`` {lifetime, lead}:
  rotate the account's access token every ``lifetime - lead`` seconds from now
  (a new token at once); ``DELETE`` on the same path stops rotating.
- ``GET /_emulator/source/stats``: {"source": {status: count}, "rotations": {account: n}}.
"""

from __future__ import annotations

from aiohttp import web

from .control import STATE_KEY, _control, _need, _target
from .models import JSON
from .state import EmulatorState


async def _users_me(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    owner = None
    if scheme.lower() == "bearer" and token.strip():
        owner = state.rotations.accepts(token.strip(), state.iter_accounts())
    status = 200 if owner is not None else 401
    state.rotations.source_statuses[status] += 1
    if owner is None:
        body = {"object": "error", "status": 401, "code": "unauthorized"}
        return web.json_response(body, status=401)
    return web.json_response({"object": "user", "account_id": owner[2]})


def _start(request: web.Request, state: EmulatorState, body: JSON) -> JSON:
    account = state.get_account(*_target(request))
    if account is None:
        raise KeyError(f"no account {request.match_info['account_id']}")
    lifetime, lead = float(_need(body, "lifetime")), float(body.get("lead", 0))
    return state.rotations.start(account, lifetime, lead).to_json(include_credentials=True)


def _stop(request: web.Request, state: EmulatorState, _: JSON) -> JSON:
    account = state.get_account(*_target(request))
    return {"stopped": account is not None and state.rotations.stop(account)}


def add_source_routes(app: web.Application) -> None:
    r, c = app.router, _control
    r.add_get("/source/v1/users/me", _users_me)
    rotation = "/_emulator/accounts/{project_id}/{account_id}/rotation"
    r.add_post(rotation, c(_start))
    r.add_delete(rotation, c(_stop))
    r.add_get("/_emulator/source/stats", c(lambda _r, s, _b: s.rotations.stats()))
