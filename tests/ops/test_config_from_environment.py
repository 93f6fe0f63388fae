"""Without a config file, the variables the operating guide names define the connection
``default`` and the Pipedream URL."""

from __future__ import annotations

from pdsidecar.config.load import load_settings
from tests.support import exercised


def test_the_environment_defines_the_default_connection_and_the_url() -> None:
    env = exercised.env(
        {
            "PIPEDREAM_CLIENT_ID": "a-client-id",
            "PIPEDREAM_CLIENT_SECRET": "a-client-secret",
            "PDSIDECAR_PIPEDREAM_URL": "http://127.0.0.1:8080",
        }
    )
    settings = load_settings(None, env=env)
    assert settings.pipedream_url == "http://127.0.0.1:8080"
    default = settings.connections["default"]
    assert (default.client_id, default.client_secret.reveal()) == ("a-client-id", "a-client-secret")
