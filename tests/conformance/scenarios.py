"""The conformance scenarios: the flags each driver gets, what the harness does meanwhile,
and what the result must say. One table column per scenario (client/SPEC.md says why).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pdsidecar_emulator import DEMO_DEAD_ACCOUNT_ID, DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

from tests.conformance.stack import Stack
from tests.support.sidecars import API_TOKEN

HOLD_SECONDS = 20
READ_EVERY_MS = 20
# A new token every 2 s; each works 6 s more: room for the sidecar's re-read (0.5-1.5 s
# after the rotation) and its push on a busy machine (at 4 s, one Java read of 1,000 met
# a dead token at load average 12).
LIFETIME, LEAD = 8.0, 6.0
LIST_PROJECT, LIST_ACCOUNTS, LIST_PAGE = "proj_conformance", 23, 10
RETRY_AFTER = 2  # seconds, the Retry-After of the rate-limited answers
DEADLINE_MS = 30_000

Result = dict[str, Any]


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def account_of(scenario: str, lang: str) -> str:
    """A fresh account per scenario and language, so nothing is cached or shared."""
    return f"apn_{scenario.replace('_', '')}{lang}"


def emulator_token(stack: Stack, account: str = DEMO_NOTION_ACCOUNT_ID) -> str:
    """The account's access token as the emulator holds it (an empty PATCH returns it)."""
    answer = stack.control("PATCH", f"accounts/{DEMO_PROJECT_ID}/{account}", {})
    token: str = answer["credentials"]["oauth_access_token"]
    return token


@dataclass(frozen=True)
class Scenario:
    name: str  # the table's column
    command: str  # the driver's scenario
    args: Callable[[Stack, str], list[str]]  # (stack, lang) -> flags
    check: Callable[[Stack, str, Result], None]
    long: bool = False  # holds: started together, before the short ones


def notion(account: str = DEMO_NOTION_ACCOUNT_ID) -> list[str]:
    return ["--project", DEMO_PROJECT_ID, "--account", account, "--source", "notion"]


def on(stack: Stack, sidecar: str) -> list[str]:
    # A deadline for a busy machine (a JVM may take seconds to connect), not for the sidecar.
    return ["--target", stack.target(sidecar), "--deadline-ms", str(DEADLINE_MS)]


def on_unix(stack: Stack, sidecar: str) -> list[str]:
    return ["--target", stack.unix_target(sidecar), "--deadline-ms", str(DEADLINE_MS)]


def tls(stack: Stack, client_cert: bool = False) -> list[str]:
    certs = stack.certs
    flags = ["--ca", str(certs.ca), "--server-name", "localhost"]
    if client_cert:
        flags += ["--cert", str(certs.client_cert), "--key", str(certs.client_key)]
    return flags


def check_get(stack: Stack, _: str, result: Result) -> None:
    assert result["ok"] and result["error"] is None, result
    assert "access_token" in result["fields"], result
    assert result["token_fp"] == fp(emulator_token(stack)), result


def check_error(code: str, reason: str | None) -> Callable[[Stack, str, Result], None]:
    def check(_: Stack, __: str, result: Result) -> None:
        error = result["error"]
        assert not result["ok"] and error is not None, result
        assert (error["code"], error["reason"]) == (code, reason), error

    return check


def check_dead(stack: Stack, lang: str, result: Result) -> None:
    check_error("FAILED_PRECONDITION", "ACCOUNT_DEAD")(stack, lang, result)
    assert result["error"]["hint"] is None, result  # the sidecar answered


def check_unreachable(stack: Stack, _: str, result: Result) -> None:
    error = result["error"]
    assert not result["ok"] and error is not None, result
    assert error["code"] == "UNAVAILABLE", error
    assert error["hint"] and stack.down_target in error["hint"], error
    assert error["elapsed_ms"] < 2000, error


def check_rate_limited(stack: Stack, lang: str, result: Result) -> None:
    check_error("RESOURCE_EXHAUSTED", "RATE_LIMITED")(stack, lang, result)
    assert result["error"]["retry_after_ms"] == RETRY_AFTER * 1000, result


def check_invalid(stack: Stack, lang: str, result: Result) -> None:
    check_error("INVALID_ARGUMENT", "INVALID_REQUEST")(stack, lang, result)
    fields = {v["field"] for v in result["error"]["violations"]}
    assert "account.project_id" in fields, result


def check_list(stack: Stack, _: str, result: Result) -> None:
    assert result["ok"], result
    assert (result["count"], result["pages"]) == (LIST_ACCOUNTS, 3), result
    assert result["ids_fp"] == fp(",".join(sorted(stack.list_ids))), result


def check_reject(stack: Stack, lang: str, result: Result) -> None:
    assert result["ok"], result
    assert result["changed"] and result["before_fp"] != result["after_fp"], result
    token = emulator_token(stack, account_of("reject", lang))
    assert result["after_fp"] == fp(token), result  # the token the emulator rotated to


def hold_args(scenario: str, source_api: bool) -> Callable[[Stack, str], list[str]]:
    def args(stack: Stack, lang: str) -> list[str]:
        sidecar = "restart" if scenario == "hold_restart" else "plain"
        flags = [*on(stack, sidecar), *notion(account_of(scenario, lang))]
        flags += ["--duration-s", str(HOLD_SECONDS), "--interval-ms", str(READ_EVERY_MS)]
        # As a long-running worker is configured (client/SPEC.md): a restart is waited for.
        flags += ["--wait-for-ready"]
        if source_api:
            flags += ["--source-api", f"{stack.emulator_url}/source/v1/users/me"]
        return flags

    return args


def check_hold_rotation(stack: Stack, __: str, result: Result) -> None:
    assert result["ok"], result
    # On a 401: how late the dead tokens came (any language's), which tells a holder a
    # moment late from one that never heard of the rotation.
    late = stack.control("GET", "source/stats")["late_by"] if result["source_401"] else None
    assert (result["read_errors"], result["source_401"]) == (0, 0), (result, late)
    assert result["source_ok"] > 0, result  # (how many depends on the machine's load)
    assert result["distinct_tokens"] >= HOLD_SECONDS / (LIFETIME - LEAD) / 2, result


def check_hold_restart(_: Stack, __: str, result: Result) -> None:
    assert result["ok"], result
    assert result["read_errors"] == 0, result
    assert result["reads"] > 0, result
    # The harness rotated the token at each restart: only a reconnected object has it.
    assert result["distinct_tokens"] >= 2, result


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("get", "get", lambda s, _: [*on(s, "plain"), *notion()], check_get),
    Scenario("uds", "get", lambda s, _: [*on_unix(s, "plain"), *notion()], check_get),
    Scenario("tls", "get", lambda s, _: [*on(s, "tls"), *tls(s), *notion()], check_get),
    Scenario(
        "mtls",
        "get",
        lambda s, _: [*on(s, "secure"), *tls(s, True), "--token", API_TOKEN, *notion()],
        check_get,
    ),
    Scenario(
        "token",
        "get",
        lambda s, _: [*on_unix(s, "secure"), "--token", API_TOKEN, *notion()],
        check_get,
    ),
    Scenario(
        "list",
        "list",
        lambda s, _: [*on(s, "plain"), "--project", LIST_PROJECT, "--page-size", str(LIST_PAGE)],
        check_list,
    ),
    Scenario(
        "dead", "error", lambda s, _: [*on(s, "plain"), *notion(DEMO_DEAD_ACCOUNT_ID)], check_dead
    ),
    Scenario(
        "not_found",
        "error",
        lambda s, _: [*on(s, "plain"), *notion("apn_noSuchAccount1")],
        check_error("NOT_FOUND", "ACCOUNT_NOT_FOUND"),
    ),
    Scenario(
        "unreachable",
        "error",
        lambda s, _: ["--target", s.down_target, *notion()],
        check_unreachable,
    ),
    Scenario(
        "rate_limited",
        "error",
        lambda s, lang: [*on(s, "plain"), *notion(account_of("ratelimited", lang))],
        check_rate_limited,
    ),
    Scenario(
        "invalid",
        "error",
        lambda s, _: [*on(s, "plain"), "--project", "nope", "--account", "x", "--source", "notion"],
        check_invalid,
    ),
    Scenario(
        "reject",
        "reject",
        lambda s, lang: [*on(s, "plain"), *notion(account_of("reject", lang))],
        check_reject,
        long=True,
    ),
    Scenario(
        "hold_rotation", "hold", hold_args("hold_rotation", True), check_hold_rotation, long=True
    ),
    Scenario(
        "hold_restart", "hold", hold_args("hold_restart", False), check_hold_restart, long=True
    ),
)
