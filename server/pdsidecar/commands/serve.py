"""``pdsidecar serve``: run the sidecar, on real Pipedream or the built-in emulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pdsidecar.config.listen import parse_listen, parse_socket_mode
from pdsidecar.config.load import load_settings, read_api_token
from pdsidecar.secret import Secret
from pdsidecar.settings import (
    ConfigError,
    ConnectionConfig,
    ListenAddress,
    ListenerConfig,
    Settings,
)

DEFAULT_LISTEN = "127.0.0.1:50051"


DESCRIPTION = """\
Serve Pipedream Connect credentials over gRPC (pdsidecar.v1.CredentialsService, with
grpc.health.v1 and reflection) to the processes next to this one. Settings come from
--config FILE, or without one from the environment; --emulator runs against a built-in
Pipedream emulator with demo accounts instead. SIGHUP (or 'pdsidecar reload') re-reads
the config and secret files; SIGTERM drains calls in flight for up to --grace seconds.
"""

ENVIRONMENT = """\
environment:
  PIPEDREAM_CLIENT_ID, PIPEDREAM_CLIENT_SECRET
                        the connection 'default', when no --config is given
  PDSIDECAR_PIPEDREAM_URL
                        Pipedream's API (default https://api.pipedream.com), unless
                        the config sets pipedream_url
  PDSIDECAR_API_TOKEN   require 'authorization: Bearer <token>' on every call
                        (or api_token_file in the config); 16+ characters
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_*
                        export a span per call (needs the otel extra)
  a connection's client_secret_env names another variable to read its secret from
"""


def add_parser(subparsers: Any) -> None:
    serve: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the sidecar",
        description=DESCRIPTION,
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help=f"HOST:PORT, [::1]:PORT or unix:PATH; repeatable (default {DEFAULT_LISTEN}, "
        "unless the config has [[listeners]])",
    )
    serve.add_argument(
        "--socket-mode",
        type=_socket_mode,
        default=0o600,
        metavar="MODE",
        help="file mode of the --listen Unix sockets, octal (default 0600; 0660 lets the group in)",
    )
    serve.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML config file (default: none; the connection comes from the environment)",
    )
    serve.add_argument(
        "--emulator",
        action="store_true",
        help="start the built-in Pipedream emulator in-process with a demo connection",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long calls in flight may finish (default 10)",
    )
    tls = serve.add_argument_group("TLS (TCP listeners; Unix sockets stay plaintext)")
    tls.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="server certificate chain (default: no TLS)"
    )
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help="server private key")
    tls.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS; default: not required)",
    )
    serve.add_argument(
        "--allow-insecure-bind",
        action="store_true",
        help="allow plaintext TCP on a non-loopback address (default: refused)",
    )
    serve.add_argument(
        "--health-listen",
        action="append",
        metavar="ADDR",
        help="an extra listener with only grpc.health.v1, for kubelet gRPC probes; repeatable "
        "(default: none)",
    )
    serve.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes sharing the TCP port(s) with SO_REUSEPORT (default 1)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="default info; debug adds a line per call",
    )
    serve.add_argument(
        "--log-format",
        default="json",
        choices=["json", "text"],
        help="JSON lines or plain text on stderr (default json)",
    )
    serve.set_defaults(run=run)


def _socket_mode(value: str) -> int:
    # argparse turns ArgumentTypeError into a usage message and exit 2; a ConfigError
    # raised here would escape it as a traceback.
    try:
        return parse_socket_mode(value)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--socket-mode: ")) from None


def _emulator_settings(url: str) -> Settings:
    from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    return Settings(
        pipedream_url=url,
        connections={"default": demo},
        api_token=read_api_token({}, os.environ),
    )


def _print_demo(sidecar: Any) -> None:
    from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

    from pdsidecar.commands.banner import demo_banner

    text = demo_banner(
        sidecar.bound[0],
        tls=sidecar.tls,
        api_token=sidecar.settings.api_token is not None,
        project=DEMO_PROJECT_ID,
        account=DEMO_NOTION_ACCOUNT_ID,
        emulator_url=sidecar.settings.pipedream_url,
    )
    print(text, flush=True)


def _listeners(args: argparse.Namespace, settings: Settings) -> list[ListenerConfig]:
    flags = args.listen or ([] if settings.listeners else [DEFAULT_LISTEN])
    return [ListenerConfig(parse_listen(value), socket_mode=args.socket_mode) for value in flags]


def _metrics_address(args: argparse.Namespace, worker: int | None) -> ListenAddress | None:
    if not args.metrics_listen:
        return None
    address = parse_listen(args.metrics_listen)
    if address.kind != "tcp":
        raise ConfigError("--metrics-listen takes HOST:PORT")
    if worker and address.port:
        address = dataclasses.replace(address, port=address.port + worker)
    return address


async def run(args: argparse.Namespace) -> int:
    from pdsidecar.runtime import workers

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    worker = workers.worker_index() if args.workers > 1 else None
    if args.emulator:
        from pdsidecar_emulator import Emulator, demo_state

        async with Emulator(demo_state()) as emulator:
            settings = _emulator_settings(emulator.url)
            return await _serve(args, settings, None, worker)
    settings = load_settings(args.config)
    return await _serve(args, settings, lambda: load_settings(args.config), worker)


async def _serve(
    args: argparse.Namespace,
    settings: Settings,
    loader: Callable[[], Settings] | None,
    worker: int | None,
) -> int:
    from pdsidecar.observe.tracing import setup_tracing
    from pdsidecar.runtime import workers
    from pdsidecar.runtime.sidecar import Sidecar
    from pdsidecar.runtime.signals import run_until_signalled
    from pdsidecar.runtime.tls import tls_from_flags

    listeners = _listeners(args, settings)
    if args.workers > 1:
        workers.check_shareable(args.workers, [*listeners, *settings.listeners])
        if worker is None:
            if "serve" not in sys.argv[1:]:
                raise ConfigError("--workers is for the pdsidecar command line")
            return await workers.supervise(args.workers, sys.argv[1:], args.grace)
    sidecar = Sidecar(
        settings,
        listeners,
        tls=tls_from_flags(args.tls_cert, args.tls_key, args.tls_client_ca),
        allow_insecure_bind=args.allow_insecure_bind,
        health_listeners=[parse_listen(value) for value in args.health_listen or ()],
        metrics_listen=_metrics_address(args, worker),
        reuse_port=worker is not None,
        loader=loader,
        tracing=setup_tracing(os.environ),
        prime_tokens=True,
    )
    watcher = asyncio.ensure_future(workers.watch_parent()) if worker is not None else None
    try:
        await run_until_signalled(sidecar, args.grace, on_started=_on_started(args, worker))
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return 0


def _on_started(args: argparse.Namespace, worker: int | None) -> Callable[[Any], None] | None:
    if args.emulator and not worker:
        return _print_demo
    return None
