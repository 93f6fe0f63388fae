"""Typed Python client for the pdsidecar credentials sidecar.

The generated messages and stubs are in :mod:`pdsidecar_client.v1`.
"""

from pdsidecar_client.aio import AsyncCredentialsClient
from pdsidecar_client.client import CredentialsClient
from pdsidecar_client.errors import CredentialsError, FieldViolation

__all__ = ["AsyncCredentialsClient", "CredentialsClient", "CredentialsError", "FieldViolation"]
