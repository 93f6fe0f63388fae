"""The one value that names what to fetch: :class:`AccountRef`.

Every call takes an ``AccountRef``, or the same values spelled out as before
(``get_credentials("proj_x", "apn_x", "notion", environment="development")``):
:func:`account_ref` turns either into one ``AccountRef``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from pdsidecar_client.v1 import credentials_pb2 as pb

_ENVIRONMENTS = {
    "": pb.ENVIRONMENT_UNSPECIFIED,
    "production": pb.ENVIRONMENT_PRODUCTION,
    "development": pb.ENVIRONMENT_DEVELOPMENT,
}


def environment(name: str) -> pb.Environment.ValueType:
    try:
        return _ENVIRONMENTS[name]
    except KeyError:
        raise ValueError(
            f"environment must be 'production' or 'development', not {name!r}"
        ) from None


@dataclass(frozen=True)
class AccountRef:
    """An account, the source to read it as, and the fields wanted."""

    project_id: str
    account_id: str
    source: str
    connection: str = ""
    environment: str = ""  # "production", "development", or "" for the sidecar's default
    external_user_id: str = ""
    required_fields: tuple[str, ...] = ()
    optional_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        environment(self.environment)  # a wrong name fails here, not at the first call
        # Lists are accepted; kept as tuples so the value stays hashable and frozen.
        object.__setattr__(self, "required_fields", tuple(self.required_fields))
        object.__setattr__(self, "optional_fields", tuple(self.optional_fields))

    def account(self) -> pb.AccountRef:
        return pb.AccountRef(
            connection=self.connection,
            project_id=self.project_id,
            account_id=self.account_id,
            environment=environment(self.environment),
            external_user_id=self.external_user_id,
        )

    def get_request(self, rejected_access_token: str = "") -> pb.GetCredentialsRequest:
        return pb.GetCredentialsRequest(
            account=self.account(),
            source=self.source,
            required_fields=self.required_fields,
            optional_fields=self.optional_fields,
            rejected_access_token=rejected_access_token,
        )

    def watch_request(self) -> pb.WatchCredentialsRequest:
        return pb.WatchCredentialsRequest(
            account=self.account(),
            source=self.source,
            required_fields=self.required_fields,
            optional_fields=self.optional_fields,
        )

    def validate_request(self) -> pb.ValidateAccountRequest:
        return pb.ValidateAccountRequest(
            account=self.account(),
            source=self.source,
            required_fields=self.required_fields,
            optional_fields=self.optional_fields,
        )


class RefFields(TypedDict, total=False):
    """The optional parts of an :class:`AccountRef`, as keywords of a call."""

    connection: str
    environment: str
    external_user_id: str
    required_fields: Sequence[str]
    optional_fields: Sequence[str]


def account_ref(
    account: AccountRef | str, account_id: str, source: str, fields: RefFields
) -> AccountRef:
    """``account`` itself, or the reference spelled out by a call's arguments."""
    if isinstance(account, AccountRef):
        if account_id or source or fields:
            raise TypeError("give an AccountRef alone, or project_id, account_id and source")
        return account
    return AccountRef(
        account,
        account_id,
        source,
        connection=fields.get("connection", ""),
        environment=fields.get("environment", ""),
        external_user_id=fields.get("external_user_id", ""),
        required_fields=tuple(fields.get("required_fields", ())),
        optional_fields=tuple(fields.get("optional_fields", ())),
    )
