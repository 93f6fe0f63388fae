"""``pdsidecar serve``: run the sidecar, on real Pipedream or the built-in emulator."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pdsidecar.config import ConnectionConfig, Settings, load_settings
from pdsidecar.listen import parse_listen
from pdsidecar.secret import Secret

DEFAULT_LISTEN = "127.0.0.1:50051"


def add_parser(subparsers: Any) -> None:
    serve: argparse.ArgumentParser = subparsers.add_parser("serve", help="run the sidecar")
    serve.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help=f"HOST:PORT, [::1]:PORT or unix:PATH; repeatable (default {DEFAULT_LISTEN})",
    )
    serve.add_argument("--config", type=Path, help="TOML config file (default: environment)")
    serve.add_argument(
        "--emulator",
        action="store_true",
        help="start the built-in Pipedream emulator in-process with a demo connection",
    )
    serve.add_argument(
        "--grace", type=float, default=10.0, help="seconds to drain calls on SIGTERM"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.set_defaults(run=run)


def _emulator_settings(url: str) -> Settings:
    from pdsidecar.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    return Settings(pipedream_url=url, connections={"default": demo})


def _print_demo(target: str) -> None:
    from pdsidecar.emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

    request = (
        f'{{"account": {{"project_id": "{DEMO_PROJECT_ID}", '
        f'"account_id": "{DEMO_NOTION_ACCOUNT_ID}"}}, "source": "notion"}}'
    )
    print(
        f"""
pdsidecar is serving on {target} against the built-in Pipedream emulator.

Call it with grpcurl (reflection is on):
  grpcurl -plaintext -d '{request}' {target} pdsidecar.v1.CredentialsService/GetCredentials

or from Python (pip install -e client/python):
  from pdsidecar_client import CredentialsClient
  with CredentialsClient("{target}") as client:
      response = client.get_credentials(
          project_id="{DEMO_PROJECT_ID}", account_id="{DEMO_NOTION_ACCOUNT_ID}", source="notion"
      )
      print(response.credentials["access_token"])
""",
        flush=True,
    )


async def run(args: argparse.Namespace) -> int:
    from pdsidecar.server import Sidecar, run_until_signalled

    listeners = [parse_listen(value) for value in (args.listen or [DEFAULT_LISTEN])]
    if args.emulator:
        from pdsidecar.emulator import Emulator, demo_state

        async with Emulator(demo_state()) as emulator:
            sidecar = Sidecar(_emulator_settings(emulator.url), listeners)
            await run_until_signalled(
                sidecar, args.grace, on_started=lambda s: _print_demo(s.bound[0])
            )
        return 0
    settings = load_settings(args.config)
    await run_until_signalled(Sidecar(settings, listeners), args.grace)
    return 0
