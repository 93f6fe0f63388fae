"""Demo data: one OAuth client and one account for every case the sidecar must handle.

The ids are stable (tests and docs use the constants); every token value is random per emulator
instance and obviously fake. The client secret is a fixed, public demo value so that
``pdsidecar serve --emulator`` can be configured without a side channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .models import APPS, DEFAULT_PROJECT_ID, Account, fake_credentials
from .state import SOURCE_TOKEN_LIFETIME, EmulatorState

DEMO_CLIENT_ID = "demo-client-id"
DEMO_CLIENT_SECRET = "demo-client-secret-not-a-real-secret"
DEMO_PROJECT_ID = DEFAULT_PROJECT_ID
DEMO_ENVIRONMENT = "production"

# production, proj_demo
DEMO_NOTION_ACCOUNT_ID = "apn_demoNotion1"  # custom OAuth, healthy, user-alice
DEMO_SLACK_ACCOUNT_ID = "apn_demoSlack1"  # Pipedream's default OAuth: no credentials, user-alice
DEMO_CODA_ACCOUNT_ID = "apn_demoCoda1"  # key-based (api_token), user-bob
DEMO_DEAD_ACCOUNT_ID = "apn_demoDead1"  # notion, dead, user-bob
DEMO_UNHEALTHY_ACCOUNT_ID = "apn_demoUnhealthy1"  # notion, unhealthy, has credentials, user-carol
DEMO_GDRIVE_ACCOUNT_ID = "apn_demoGdrive1"  # google_drive, custom OAuth, user-alice
# Pipedream's default OAuth, answered with "credentials": null, user-carol
DEMO_GCAL_ACCOUNT_ID = "apn_demoGcal1"
# development, proj_demo: proves accounts are scoped per environment
DEMO_DEV_NOTION_ACCOUNT_ID = "apn_demoDevNotion1"  # notion, custom OAuth, user-alice
# Pipedream's default OAuth in development, where Pipedream does return credentials
DEMO_DEV_SLACK_ACCOUNT_ID = "apn_demoDevSlack1"  # slack_v2, user-alice
DEMO_DEV_ACCOUNT_IDS = frozenset({DEMO_DEV_NOTION_ACCOUNT_ID, DEMO_DEV_SLACK_ACCOUNT_ID})

DEMO_USER_ALICE = "user-alice"
DEMO_USER_BOB = "user-bob"
DEMO_USER_CAROL = "user-carol"

DEAD_ERROR = "The refresh token was revoked by the user; reconnect the account."
UNHEALTHY_ERROR = "Token refresh failed: upstream returned 503; Pipedream will retry."

# id, app, user, note: printed by `pdsidecar emulator`
DEMO_ACCOUNTS: tuple[tuple[str, str, str, str], ...] = (
    (DEMO_NOTION_ACCOUNT_ID, "notion", DEMO_USER_ALICE, "custom OAuth, healthy"),
    (DEMO_SLACK_ACCOUNT_ID, "slack_v2", DEMO_USER_ALICE, "default OAuth, no credentials"),
    (DEMO_CODA_ACCOUNT_ID, "coda", DEMO_USER_BOB, "key-based, api_token"),
    (DEMO_DEAD_ACCOUNT_ID, "notion", DEMO_USER_BOB, "dead"),
    (DEMO_UNHEALTHY_ACCOUNT_ID, "notion", DEMO_USER_CAROL, "unhealthy, has credentials"),
    (DEMO_GDRIVE_ACCOUNT_ID, "google_drive", DEMO_USER_ALICE, "custom OAuth, healthy"),
    (DEMO_GCAL_ACCOUNT_ID, "google_calendar", DEMO_USER_CAROL, "default OAuth, credentials: null"),
    (DEMO_DEV_NOTION_ACCOUNT_ID, "notion", DEMO_USER_ALICE, "development environment"),
    (DEMO_DEV_SLACK_ACCOUNT_ID, "slack_v2", DEMO_USER_ALICE, "development, default OAuth"),
)


def demo_state(
    *,
    clock: Callable[[], float] = time.time,
    seed: int | None = None,
    token_lifetime: int = 3600,
) -> EmulatorState:
    """A fresh EmulatorState holding the demo client and accounts."""
    state = EmulatorState(clock=clock, seed=seed, token_lifetime=token_lifetime)
    state.add_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    now = clock()
    created = now - 30 * 86400
    hour = SOURCE_TOKEN_LIFETIME

    def add(account_id: str, app: str, user: str, environment: str = DEMO_ENVIRONMENT) -> Account:
        spec = APPS[app]
        account = Account(account_id, spec, user, f"{spec.name} ({user})", DEMO_PROJECT_ID)
        account.environment = environment
        account.created_at, account.updated_at = created, now
        if spec.auth_type == "oauth":  # just refreshed by Pipedream: expires in an hour
            account.last_refreshed_at = now
            account.expires_at, account.next_refresh_at = now + hour, now + hour - 600
        account.credentials = fake_credentials(spec, user)
        return state.put_account(account)

    def add_pipedream_oauth(
        account_id: str, app: str, user: str, environment: str = DEMO_ENVIRONMENT
    ) -> Account:
        account = add(account_id, app, user, environment)
        account.pipedream_oauth = True
        account.credentials = fake_credentials(account.app, user, pipedream_oauth=True)
        return account

    add(DEMO_NOTION_ACCOUNT_ID, "notion", DEMO_USER_ALICE)
    add(DEMO_SLACK_ACCOUNT_ID, "slack_v2", DEMO_USER_ALICE).credentials = None
    add(DEMO_CODA_ACCOUNT_ID, "coda", DEMO_USER_BOB)
    dead = add(DEMO_DEAD_ACCOUNT_ID, "notion", DEMO_USER_BOB)
    dead.healthy, dead.dead, dead.error = False, True, DEAD_ERROR
    dead.last_refreshed_at, dead.next_refresh_at = now - 8 * 86400, None
    dead.expires_at = now - 8 * 86400 + hour
    sick = add(DEMO_UNHEALTHY_ACCOUNT_ID, "notion", DEMO_USER_CAROL)
    sick.healthy, sick.error = False, UNHEALTHY_ERROR
    sick.next_refresh_at = now + 300  # the refresh keeps failing; Pipedream retries soon
    add(DEMO_GDRIVE_ACCOUNT_ID, "google_drive", DEMO_USER_ALICE)
    gcal = add_pipedream_oauth(DEMO_GCAL_ACCOUNT_ID, "google_calendar", DEMO_USER_CAROL)
    gcal.withheld_as = "null"
    add(DEMO_DEV_NOTION_ACCOUNT_ID, "notion", DEMO_USER_ALICE, "development")
    add_pipedream_oauth(DEMO_DEV_SLACK_ACCOUNT_ID, "slack_v2", DEMO_USER_ALICE, "development")
    return state
