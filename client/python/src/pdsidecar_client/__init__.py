"""Typed Python client for the pdsidecar credentials sidecar.

The generated messages and stubs are in :mod:`pdsidecar_client.v1`.
"""

from pdsidecar_client._watching import FrozenCredentials
from pdsidecar_client.account import AccountRef
from pdsidecar_client.aio import AsyncCredentialsClient
from pdsidecar_client.client import CredentialsClient
from pdsidecar_client.errors import CredentialsError, FieldViolation
from pdsidecar_client.refreshable import RefreshableCredentials
from pdsidecar_client.refreshable_aio import AsyncRefreshableCredentials

__all__ = [
    "AccountRef",
    "AsyncCredentialsClient",
    "AsyncRefreshableCredentials",
    "CredentialsClient",
    "CredentialsError",
    "FieldViolation",
    "FrozenCredentials",
    "RefreshableCredentials",
]
