"""Pipedream API emulator: a loopback HTTP server speaking the parts of Pipedream's API the
sidecar uses (token, account, account list), with demo data, counters, fault injection and an
in-flight gauge for tests and benchmarks."""

from .app import Emulator, build_app, run_emulator
from .models import ENVIRONMENTS, ROUTES, Account, App, Client, Fault, IssuedToken, Route
from .seed import (
    DEMO_ACCOUNTS,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CODA_ACCOUNT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_DEV_ACCOUNT_IDS,
    DEMO_DEV_NOTION_ACCOUNT_ID,
    DEMO_DEV_SLACK_ACCOUNT_ID,
    DEMO_ENVIRONMENT,
    DEMO_GCAL_ACCOUNT_ID,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_UNHEALTHY_ACCOUNT_ID,
    DEMO_USER_ALICE,
    DEMO_USER_BOB,
    DEMO_USER_CAROL,
    demo_state,
)
from .state import MAX_PAGE_SIZE, EmulatorState

__all__ = [
    "DEMO_ACCOUNTS",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_CODA_ACCOUNT_ID",
    "DEMO_DEAD_ACCOUNT_ID",
    "DEMO_DEV_ACCOUNT_IDS",
    "DEMO_DEV_NOTION_ACCOUNT_ID",
    "DEMO_DEV_SLACK_ACCOUNT_ID",
    "DEMO_ENVIRONMENT",
    "DEMO_GCAL_ACCOUNT_ID",
    "DEMO_GDRIVE_ACCOUNT_ID",
    "DEMO_NOTION_ACCOUNT_ID",
    "DEMO_PROJECT_ID",
    "DEMO_SLACK_ACCOUNT_ID",
    "DEMO_UNHEALTHY_ACCOUNT_ID",
    "DEMO_USER_ALICE",
    "DEMO_USER_BOB",
    "DEMO_USER_CAROL",
    "ENVIRONMENTS",
    "MAX_PAGE_SIZE",
    "ROUTES",
    "Account",
    "App",
    "Client",
    "Emulator",
    "EmulatorState",
    "Fault",
    "IssuedToken",
    "Route",
    "build_app",
    "demo_state",
    "run_emulator",
]
