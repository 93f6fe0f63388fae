"""Channel settings shared by the blocking and async clients: TLS, and why a call never connected.

TLS: ``tls_ca`` (the CA that signed the sidecar's certificate) turns it on;
``tls_cert`` and ``tls_key`` add a client certificate for a listener started
with ``--tls-client-ca`` (mutual TLS); ``tls_server_name`` is the name to
expect in the server certificate when the target is an address it does not
name. Each takes a path to a PEM file, or the PEM bytes themselves.

When a call's deadline passes while the channel is not connected, the
clients ask the channel for its last connection error with one health check
made without ``wait_for_ready``: a call to the health service is not retried
by the service config (which names only the credentials service), so it
fails at once with the error gRPC keeps for the address.
"""

from __future__ import annotations

import os
from typing import Final

import grpc

Pem = str | os.PathLike[str] | bytes

PROBE_METHOD: Final = "/grpc.health.v1.Health/Check"
PROBE_TIMEOUT: Final = 1.0


def _pem(value: Pem | None, name: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as file:
            return file.read()
    except OSError as error:
        raise ValueError(f"{name}={os.fspath(value)!r}: {error.strerror}") from None


def tls_credentials(
    tls_ca: Pem | None, tls_cert: Pem | None, tls_key: Pem | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials, or None for a plaintext channel (no TLS argument given)."""
    if tls_ca is None and tls_cert is None and tls_key is None:
        return None
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together (a client certificate and its key)")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(tls_ca, "tls_ca"),
        private_key=_pem(tls_key, "tls_key"),
        certificate_chain=_pem(tls_cert, "tls_cert"),
    )


def options(
    base: tuple[tuple[str, object], ...], tls_server_name: str | None
) -> list[tuple[str, object]]:
    extra = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
    return [*base, *extra]


def hint(last_error: str, tls: bool) -> str:
    """What a connection error most likely means, in words a person can act on."""
    text = last_error.lower()
    if "connection refused" in text:
        return "nothing listens there: is 'pdsidecar serve' running on this address"
    if "http1.x" in text or "http/1" in text:
        return "an HTTP/1 server answered (the metrics port?), not the sidecar's gRPC listener"
    if "certificate_verify_failed" in text:
        return "the server certificate is not signed by the CA given as tls_ca (--tls-ca)"
    if "wrong_version_number" in text or ("handshake" in text and tls):
        return (
            "the TLS handshake failed: the listener may be plaintext (then drop the TLS "
            "options), or want a client certificate (tls_cert/tls_key, --tls-cert/--tls-key)"
        )
    closed = "socket closed" in text or "connection reset" in text
    if closed and not tls:
        return (
            "the server closed the connection at once: a TLS listener does that to plaintext "
            "clients; pass its CA as tls_ca (--tls-ca)"
        )
    if closed:
        return (
            "the server closed the connection during the TLS handshake: a listener started "
            "with --tls-client-ca wants a client certificate (tls_cert/tls_key, "
            "--tls-cert/--tls-key) signed by that CA"
        )
    if "no such file" in text:
        return "no Unix socket at that path: is 'pdsidecar serve' listening there"
    if "permission denied" in text:
        return "the socket's file mode keeps this user out (see serve --socket-mode)"
    return ""


def last_error(details: str) -> str:
    """gRPC's own connection error, from the details of an UNAVAILABLE call."""
    return details.partition("last error: ")[2] or details


def not_connected(target: str, seconds: float, last_error: str, tls: bool, waited: bool) -> str:
    """The message of a call that failed because the channel never connected."""
    found = last_error or "none yet (still connecting: no answer from the address)"
    advice = hint(last_error, tls)
    waiting = (
        f"waited {seconds:g} s for the sidecar at {target} to become ready (wait_for_ready), "
        "but it never connected"
        if waited
        else f"could not connect to the sidecar at {target}"
    )
    text = f"{waiting}; last connection error: {found}"
    if advice:
        text += f"; {advice}"
    if waited:
        text += ". Pass wait_for_ready=False to fail fast instead of waiting"
    return text
