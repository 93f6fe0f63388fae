"""``pdsidecar serve`` config files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

# Fast retries, so tests of failures do not wait.
FAST_RETRIES: Mapping[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05}


def write_config(
    path: Path,
    url: str,
    connections: Mapping[str, str] | None = None,
    extra: str = "",
    *,
    client_secret: str | None = None,
    secret_env: str | None = None,
    policy: Mapping[str, Any] = FAST_RETRIES,
) -> Path:
    """A TOML config at ``path`` for a Pipedream at ``url``.

    ``connections`` maps connection names to client ids (default: the emulator's demo
    client as ``default``); every connection reads one client secret, from the
    environment variable ``secret_env`` or from a file next to ``path`` holding
    ``client_secret`` (the emulator's demo secret when neither is given). ``extra`` is
    TOML appended as it is (a ``[shared_cache]`` table, listeners, ...).
    """
    if secret_env is not None:
        secret_line = f'client_secret_env = "{secret_env}"'
    else:
        secret = path.parent / "client-secret"
        secret.write_text((client_secret or DEMO_CLIENT_SECRET) + "\n", encoding="utf-8")
        secret_line = f'client_secret_file = "{secret}"'
    lines = [f'pipedream_url = "{url}"', "", "[policy]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in policy.items()]
    lines.append("")
    for name, client_id in (connections or {"default": DEMO_CLIENT_ID}).items():
        lines += [f"[connections.{name}]", f'client_id = "{client_id}"', secret_line, ""]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path
