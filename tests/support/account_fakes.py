"""In-memory stand-ins for the credential layer's tests: accounts and an PipedreamConnection."""

from __future__ import annotations

import asyncio
from typing import Any

from pdsidecar.errors import AccountNotFound
from pdsidecar.pipedream.models import Account, AccountPage, TokenStatus
from tests.support.logsink import SECRETS

WALL_START = 1_700_000_000.0
# Every credential value in these tests starts with this, so a leak is easy to spot.
SECRET_MARK = "SECRET-"
ACCESS = SECRET_MARK + "access-aaaaaaaa"
REFRESH = SECRET_MARK + "refresh-bbbbbbbb"
CLIENT_ID = SECRET_MARK + "clientid-cccccccc"
API_KEY = SECRET_MARK + "apikey-dddddddd"
SECRETS.update({ACCESS, REFRESH, CLIENT_ID, API_KEY})


def make_account(
    account_id: str = "apn_1",
    *,
    app: str = "notion",
    external_id: str = "user-1",
    credentials: dict[str, str] | bool | None = True,
    expires_at: float | None = None,
    healthy: bool = True,
    dead: bool = False,
    error: str = "",
) -> Account:
    """An account as Pipedream would send it; ``credentials=True`` means an OAuth set."""
    data: dict[str, Any] = {
        "id": account_id,
        "name": f"{app} account",
        "external_id": external_id,
        "healthy": healthy,
        "dead": dead,
        "error": error or None,
        "app": {"name_slug": app, "name": app.title(), "auth_type": "oauth"},
        "expires_at": expires_at,
    }
    if credentials is True:
        data["credentials"] = {
            "oauth_access_token": ACCESS,
            "oauth_refresh_token": REFRESH,
            "oauth_client_id": CLIENT_ID,
        }
    elif isinstance(credentials, dict):
        SECRETS.update(v for v in credentials.values() if len(v) >= 8)
        data["credentials"] = credentials
    return Account.from_json(data)


class FakeUpstream:
    """Counts calls; ``gate`` holds fetches until set; ``fail`` is raised by fetches."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.accounts: dict[tuple[str, str, str], Account] = {}
        self.pages: dict[str | None, AccountPage] = {}
        self.get_calls = 0
        self.list_calls: list[dict[str, Any]] = []
        self.refresh_calls: list[bool] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.status: TokenStatus | None = None

    def put(self, account: Account, project: str = "proj_1", env: str = "production") -> None:
        self.accounts[(project, env, account.id)] = account

    async def get_account(
        self, project_id: str, environment: str, account_id: str, *, deadline: float | None
    ) -> Account:
        self.get_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        try:
            return self.accounts[(project_id, environment, account_id)]
        except KeyError:
            raise AccountNotFound(f"Account {account_id} not found") from None

    async def list_accounts(
        self,
        project_id: str,
        environment: str,
        *,
        app: str | None,
        external_user_id: str | None,
        limit: int,
        after: str | None,
        deadline: float | None,
    ) -> AccountPage:
        self.list_calls.append(
            {
                "project_id": project_id,
                "environment": environment,
                "app": app,
                "external_user_id": external_user_id,
                "limit": limit,
                "after": after,
            }
        )
        if self.fail is not None:
            raise self.fail
        return self.pages.get(after, AccountPage((), None))

    async def refresh_token(self, *, force: bool, deadline: float | None) -> TokenStatus:
        self.refresh_calls.append(force)
        self.status = TokenStatus(self.name, WALL_START + 3600, True)
        return self.status

    def token_status(self) -> TokenStatus | None:
        return self.status
