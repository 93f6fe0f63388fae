"""Airweave's mapping rules: slugs, blocked sources, field names and account checks."""

from __future__ import annotations

import pytest

from pdsidecar.credentials import mapping
from pdsidecar.errors import ERROR_TABLE
from pdsidecar_client.v1 import credentials_pb2 as pb
from tests.support.account_fakes import (
    ACCESS,
    API_KEY,
    CLIENT_ID,
    REFRESH,
    SECRET_MARK,
    make_account,
)


@pytest.mark.parametrize(
    ("source", "slug"),
    [
        ("apollo", "apollo_io"),
        ("outlook_mail", "outlook"),
        ("outlook_calendar", "outlook"),
        ("slack", "slack_v2"),
        ("powerpoint", "microsoft_onedrive"),
        ("calcom", "cal_com"),
        ("notion", "notion"),
        ("coda", "coda"),
    ],
)
def test_app_slug(source: str, slug: str) -> None:
    assert mapping.app_slug(source) == slug


@pytest.mark.parametrize(
    "source",
    ["ctti", "github", "jira", "confluence", "bitbucket", "onenote", "word", "servicenow"],
)
def test_blocked_sources(source: str) -> None:
    assert mapping.is_blocked(source)


@pytest.mark.parametrize("source", ["notion", "slack", "coda", "outlook_mail"])
def test_supported_sources_are_not_blocked(source: str) -> None:
    assert not mapping.is_blocked(source)


@pytest.mark.parametrize(
    ("name", "pipedream"),
    [
        ("access_token", "oauth_access_token"),
        ("refresh_token", "oauth_refresh_token"),
        ("client_id", "oauth_client_id"),
        ("client_secret", "oauth_client_secret"),
        ("api_key", "api_key"),
        ("api_token", "api_key"),
        ("personal_access_token", "oauth_access_token"),
        ("base_url", "base_url"),
    ],
)
def test_field_names(name: str, pipedream: str) -> None:
    assert mapping.pipedream_field("notion", name) == pipedream


@pytest.mark.parametrize("source", ["coda", "slab"])
@pytest.mark.parametrize("name", ["api_key", "api_token"])
def test_per_source_overrides_read_api_token(source: str, name: str) -> None:
    assert mapping.pipedream_field(source, name) == "api_token"


@pytest.mark.parametrize("source", ["coda", "slab"])
def test_overrides_leave_other_fields_alone(source: str) -> None:
    assert mapping.pipedream_field(source, "access_token") == "oauth_access_token"


def test_every_reason_is_in_the_contract() -> None:
    errors = {
        mapping.USER_MISMATCH,
        mapping.APP_MISMATCH,
        mapping.DEAD,
        mapping.NO_CREDENTIALS,
        mapping.MISSING_FIELDS,
    }
    assert errors <= set(ERROR_TABLE)  # each can be raised by GetCredentials
    for reason in (*errors, mapping.UNHEALTHY):
        assert pb.Reason.Value(f"REASON_{reason}")


SECRET = SECRET_MARK + "clientsecret-eeeeeeee"
FULL_OAUTH = {
    "oauth_access_token": ACCESS,
    "oauth_refresh_token": REFRESH,
    "oauth_client_id": CLIENT_ID,
    "oauth_client_secret": SECRET,
}


@pytest.mark.parametrize(
    ("source", "app", "served"),
    [
        ("notion", "notion", {"access_token": ACCESS}),  # Airweave's OAuth2AuthConfig
        ("hubspot", "hubspot", {"access_token": ACCESS, "refresh_token": REFRESH}),
        (
            "google_drive",
            "google_drive",
            {"access_token": ACCESS, "refresh_token": REFRESH, "client_id": CLIENT_ID},
        ),
        ("some_new_app", "some_new_app", {"access_token": ACCESS, "refresh_token": REFRESH}),
    ],
)
def test_a_caller_that_names_no_field_gets_the_sources_defaults_never_the_secret(
    source: str, app: str, served: dict[str, str]
) -> None:
    check = mapping.check_account(make_account(app=app, credentials=FULL_OAUTH), source=source)
    assert check.problems == ()
    assert check.credentials == served


def test_a_caller_that_names_fields_gets_those_and_nothing_else() -> None:
    account = make_account(credentials=FULL_OAUTH)
    check = mapping.check_account(account, source="notion", required_fields=("access_token",))
    assert check.credentials == {"access_token": ACCESS}
    check = mapping.check_account(account, source="notion", optional_fields=("client_secret",))
    assert check.credentials == {"access_token": ACCESS, "client_secret": SECRET}
    check = mapping.check_account(
        account, source="notion", required_fields=("access_token",), optional_fields=("x",)
    )
    assert check.credentials == {"access_token": ACCESS}  # a missing optional is skipped


@pytest.mark.parametrize(
    ("source", "held", "served"),
    [
        ("coda", {"api_token": API_KEY}, {"api_key": API_KEY}),
        ("apollo", {"api_key": API_KEY}, {"api_key": API_KEY}),
        ("document360", {"api_key": API_KEY}, {"api_token": API_KEY}),
    ],
)
def test_key_based_sources_default_to_their_key(
    source: str, held: dict[str, str], served: dict[str, str]
) -> None:
    account = make_account(app=mapping.app_slug(source), credentials=held)
    assert mapping.check_account(account, source=source).credentials == served


def test_coda_api_key_reads_api_token() -> None:
    account = make_account(app="coda", credentials={"api_token": API_KEY})
    check = mapping.check_account(account, source="coda", required_fields=("api_key",))
    assert check.credentials == {"api_key": API_KEY}


def test_slack_source_matches_slack_v2_app() -> None:
    check = mapping.check_account(make_account(app="slack_v2"), source="slack")
    assert check.problems == ()


def test_app_mismatch() -> None:
    check = mapping.check_account(make_account("apn_x", app="slack_v2"), source="notion")
    assert [p.reason for p in check.problems] == ["ACCOUNT_APP_MISMATCH"]
    assert check.problems[0].message == (
        "The request asked for source 'notion', but account apn_x is for Pipedream app "
        "'slack_v2' (source 'slack')"
    )
    assert check.credentials is None


@pytest.mark.parametrize(
    ("source", "app", "message"),
    [
        (
            "notoin",
            "notion",
            "The request asked for source 'notoin', but account apn_x is for Pipedream app "
            "'notion'; 'notoin' is not a source name pdsidecar knows: did you mean 'notion'?",
        ),
        (
            "slak",
            "notion",
            "The request asked for source 'slak', but account apn_x is for Pipedream app "
            "'notion'; 'slak' is not a source name pdsidecar knows: did you mean 'slack'?",
        ),
        (
            "slack",
            "notion",
            "The request asked for source 'slack' (Pipedream app 'slack_v2'), but account "
            "apn_x is for Pipedream app 'notion'",
        ),
        (
            "gdrive",  # nearer in spelling to onedrive: the alias wins
            "google_drive",
            "The request asked for source 'gdrive', but account apn_x is for Pipedream app "
            "'google_drive'; 'gdrive' is not a source name pdsidecar knows: did you mean "
            "'google_drive'?",
        ),
        (
            "Google-Calendar",
            "google_calendar",
            "The request asked for source 'Google-Calendar', but account apn_x is for Pipedream "
            "app 'google_calendar'; 'Google-Calendar' is not a source name pdsidecar knows: "
            "did you mean 'google_calendar'?",
        ),
        (
            "xyzzy",
            "notion",
            "The request asked for source 'xyzzy', but account apn_x is for Pipedream app "
            "'notion'; 'xyzzy' is not a source name pdsidecar knows",
        ),
    ],
)
def test_app_mismatch_says_what_was_asked_and_suggests_a_near_source(
    source: str, app: str, message: str
) -> None:
    check = mapping.check_account(make_account("apn_x", app=app), source=source)
    assert [p.message for p in check.problems] == [message]


@pytest.mark.parametrize(
    ("credentials", "seen"),
    [(None, "no credentials field"), ({}, "credentials: {}"), ({"api_key": ""}, "all null")],
)
def test_credentials_not_available_says_what_pipedream_sent(
    credentials: dict[str, str] | None, seen: str
) -> None:
    check = mapping.check_account(make_account(credentials=credentials), source="notion")
    assert [p.reason for p in check.problems] == ["CREDENTIALS_NOT_AVAILABLE"]
    assert seen in check.problems[0].message
    assert "it uses Pipedream's default OAuth client" not in check.problems[0].message
    assert check.credentials is None


def test_missing_required_fields_names_both_sides_never_values() -> None:
    check = mapping.check_account(
        make_account(), source="notion", required_fields=("access_token", "api_key", "domain")
    )
    [problem] = check.problems
    assert problem.reason == "MISSING_REQUIRED_FIELDS"
    assert check.missing == ("api_key", "domain")
    assert "api_key, domain" in problem.message
    assert "oauth_access_token, oauth_client_id, oauth_refresh_token" in problem.message
    assert SECRET_MARK not in problem.message
    assert check.credentials is None


def test_empty_credentials_are_no_credentials() -> None:
    check = mapping.check_account(make_account(credentials={}), source="notion")
    [problem] = check.problems
    assert problem.reason == "CREDENTIALS_NOT_AVAILABLE"


def test_dead_includes_pipedream_error_text() -> None:
    check = mapping.check_account(make_account(dead=True, error="invalid_grant"), source="notion")
    assert [p.reason for p in check.problems] == ["ACCOUNT_DEAD"]
    assert "invalid_grant" in check.problems[0].message
    assert check.credentials is None
    plain = mapping.check_account(make_account(dead=True), source="notion")
    assert plain.problems[0].message.endswith("must be reconnected")


def test_unhealthy_is_a_warning_only() -> None:
    check = mapping.check_account(
        make_account(healthy=False, error="refresh failed"), source="notion"
    )
    assert [p.reason for p in check.problems] == ["ACCOUNT_UNHEALTHY"]
    assert check.problems[0].is_warning
    assert check.blocking is None
    assert check.credentials is not None
    assert "refresh failed" in check.problems[0].message


def test_user_mismatch_is_reported_alone_without_the_other_user() -> None:
    account = make_account(app="slack_v2", external_id="other-user-42", dead=True, healthy=False)
    check = mapping.check_account(account, source="notion", external_user_id="user-1")
    assert [p.reason for p in check.problems] == ["ACCOUNT_USER_MISMATCH"]
    assert "other-user-42" not in check.problems[0].message
    assert "slack_v2" not in check.problems[0].message
    assert check.credentials is None


def test_matching_user_passes() -> None:
    check = mapping.check_account(make_account(), source="notion", external_user_id="user-1")
    assert check.problems == ()


def test_problems_come_in_a_fixed_order() -> None:
    account = make_account(app="slack_v2", credentials=None, dead=True, healthy=False)
    check = mapping.check_account(account, source="notion")
    assert [p.reason for p in check.problems] == [
        "ACCOUNT_APP_MISMATCH",
        "ACCOUNT_DEAD",
        "CREDENTIALS_NOT_AVAILABLE",
        "ACCOUNT_UNHEALTHY",
    ]
    assert check.blocking is not None and check.blocking.reason == "ACCOUNT_APP_MISMATCH"


def test_check_repr_hides_values() -> None:
    check = mapping.check_account(make_account(), source="notion")
    assert SECRET_MARK not in repr(check)


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("gdrive", "google_drive"),
        ("gcal", "google_calendar"),
        ("googlemail", "gmail"),
        ("gdocs", "google_docs"),
        ("sfdc", "salesforce"),
        ("cal_com", "calcom"),
        ("GOOGLE DRIVE", "google_drive"),
    ],
)
def test_known_aliases_suggest_the_source(name: str, meant: str) -> None:
    assert mapping.suggestion(name) == meant
