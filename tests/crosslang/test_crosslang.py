"""Callers in every language, against a running sidecar.

Starts the Pipedream emulator and the sidecar (configured from the environment,
as in production) as subprocesses, builds the Go, TypeScript and Java example
clients, each from its own `client/<lang>` alone, and runs them, with the
Python example beside them, checking the lines they print (the format is the
same in every language; see the examples' headers):

    credentials access_token=<token> fields=<names,...>
    valid=<true|false> problems=<REASON,...>
    refreshed=<true|false> expires_at=<RFC 3339>
    watch access_token=<token> expires_at=<RFC 3339>   (one per value of a watch)
    error code=<GRPC_CODE> reason=<ErrorInfo reason>

A language whose toolchain is missing (go; node with client/ts/node_modules;
java and mvn) is skipped with the reason, except under CI=true, where .ci/run
installs them (scripts/install_toolchain.sh) and a missing one fails the test.
The build and run times are reported at the end of the module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
)

from harness.ports import free_port
from tests.support.ci import missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LANGS = ["go", "ts", "java", "python"]
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 60
# Airweave field names of a custom-OAuth account's credentials, sorted.
FIELDS = "access_token,client_id,client_secret,refresh_token"

TIMINGS: dict[str, float] = {}


@dataclass
class Example:
    """One language's example client: the command to run it, or why there is none."""

    lang: str
    argv: list[str] = field(default_factory=list)
    missing: str | None = None  # a toolchain is not installed
    build_error: str | None = None
    build_seconds: float = 0.0


def _run(cmd: list[str], cwd: Path, timeout: float = BUILD_TIMEOUT) -> str | None:
    """Runs a build step; None when it succeeds, else its output."""
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode == 0:
        return None
    return f"$ {' '.join(cmd)} (in {cwd}) -> {done.returncode}\n{done.stdout}\n{done.stderr}"


def _build_go(out: Path) -> Example:
    go = shutil.which("go")
    if not go:
        return Example("go", missing="Go toolchain not found ('go' is not on PATH)")
    binary = out / "pdsidecar-example-go"
    cmd = [go, "build", "-o", str(binary), "./examples/pdsidecar-example"]
    error = _run(cmd, ROOT / "client/go")
    return Example("go", [str(binary)], build_error=error)


def _build_ts(_: Path) -> Example:
    node = shutil.which("node")
    if not node:
        return Example("ts", missing="Node.js not found ('node' is not on PATH)")
    tsc = ROOT / "client/ts/node_modules/.bin/tsc"
    if not tsc.exists():
        return Example(
            "ts", missing="client/ts/node_modules is not installed (scripts/install_toolchain.sh)"
        )
    error = _run([str(tsc), "-p", "."], ROOT / "client/ts")
    script = ROOT / "client/ts/dist/examples/pdsidecar-example.js"
    return Example("ts", [node, str(script)], build_error=error)


def _build_java(_: Path) -> Example:
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        return Example("java", missing="Java or Maven not found ('java'/'mvn' not on PATH)")
    error = _run([mvn, "-B", "-q", "package"], ROOT / "client/java")
    jar = ROOT / "client/java/examples/target/pdsidecar-example.jar"
    # C1 only: a short-lived CLI starts ~0.3 s faster.
    return Example("java", [java, "-XX:TieredStopAtLevel=1", "-jar", str(jar)], build_error=error)


def _build_python(_: Path) -> Example:
    script = ROOT / "client/python/examples/pdsidecar_example.py"
    return Example("python", [sys.executable, str(script)])


BUILDERS: dict[str, Callable[[Path], Example]] = {
    "go": _build_go,
    "ts": _build_ts,
    "java": _build_java,
    "python": _build_python,
}


def _timed(lang: str, out: Path) -> Example:
    started = time.monotonic()
    example = BUILDERS[lang](out)
    example.build_seconds = time.monotonic() - started
    return example


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Example]]]:
    """Starts every language's build at once; each test waits for its own."""
    out = tmp_path_factory.mktemp("crosslang-bin")
    with ThreadPoolExecutor(max_workers=len(LANGS)) as pool:
        yield {lang: pool.submit(_timed, lang, out) for lang in LANGS}


@dataclass
class Sidecar:
    target: str
    emulator_url: str
    logs: list[Path]

    def control(self, method: str, path: str, body: object | None = None) -> object:
        """Calls the emulator's /_emulator/ control surface."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.emulator_url}/_emulator/{path}", data=data, method=method
        )
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            result: object = json.load(response)
            return result

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs)


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after 30 s")


def _emulator_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=1):
            return True
    except OSError:
        return False


def _sidecar_up(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
            return True
        except grpc.FutureTimeoutError:
            return False


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """The emulator and a sidecar configured against it, as two processes."""
    logs = tmp_path_factory.mktemp("crosslang-logs")
    emulator_port, sidecar_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    target = f"127.0.0.1:{sidecar_port}"
    env = {
        **os.environ,
        "PIPEDREAM_CLIENT_ID": DEMO_CLIENT_ID,
        "PIPEDREAM_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "PDSIDECAR_PIPEDREAM_URL": emulator_url,
    }
    procs: list[subprocess.Popen[bytes]] = []
    handle = Sidecar(target, emulator_url, [logs / "emulator.log", logs / "sidecar.log"])
    try:
        with handle.logs[0].open("wb") as log:
            cmd = [sys.executable, "-m", "pdsidecar", "emulator", "--port", str(emulator_port)]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        _wait_until(lambda: _emulator_up(emulator_url), procs[0], "the emulator")
        with handle.logs[1].open("wb") as log:
            cmd = [sys.executable, "-m", "pdsidecar", "serve", "--listen", target, "--grace", "1"]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        _wait_until(lambda: _sidecar_up(target), procs[1], "the sidecar")
        yield handle
    except RuntimeError as error:
        pytest.fail(f"{error}\n{handle.log_tail()}")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module", autouse=True)
def report_timings(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.monotonic()
    yield
    TIMINGS["module total"] = time.monotonic() - started
    line = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in TIMINGS.items())
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ncross-language timings: {line}")


@pytest.fixture(params=LANGS)
def example(request: pytest.FixtureRequest, builds: dict[str, Future[Example]]) -> Example:
    built = builds[request.param].result()
    TIMINGS.setdefault(f"{built.lang} build", built.build_seconds)
    if built.missing:
        missing(built.missing)
    if built.build_error:
        pytest.fail(f"building the {built.lang} example failed:\n{built.build_error}")
    return built


@dataclass
class Result:
    code: int
    out: list[str]
    err: str


def call(example: Example, sidecar: Sidecar, *args: str) -> Result:
    """Runs the example; the target comes from PDSIDECAR_TARGET, the rest from flags."""
    env = {**os.environ, "PDSIDECAR_TARGET": sidecar.target}
    started = time.monotonic()
    done = subprocess.run(
        [*example.argv, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    key = f"{example.lang} runs"
    TIMINGS[key] = TIMINGS.get(key, 0.0) + time.monotonic() - started
    return Result(done.returncode, done.stdout.splitlines(), done.stderr)


def account_args(account: str, source: str) -> list[str]:
    return ["--project", DEMO_PROJECT_ID, "--account", account, "--source", source]


def demo_token(sidecar: Sidecar, account: str) -> str:
    """The account's access token as the emulator holds it (an empty PATCH returns it)."""
    answer = sidecar.control("PATCH", f"accounts/{DEMO_PROJECT_ID}/{account}", {})
    assert isinstance(answer, dict)
    token: str = answer["credentials"]["oauth_access_token"]
    assert token.startswith("ntn_demo_")
    return token


def test_get_credentials_returns_the_demo_notion_token(example: Example, sidecar: Sidecar) -> None:
    result = call(example, sidecar, "get", *account_args(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert result.code == 0, result.err
    assert len(result.out) == 1, result.out
    token = demo_token(sidecar, DEMO_NOTION_ACCOUNT_ID)
    assert re.fullmatch(
        rf"credentials access_token={re.escape(token)} fields=\S*access_token\S*", result.out[0]
    ), result.out


def test_default_oauth_account_reads_credentials_not_available(
    example: Example, sidecar: Sidecar
) -> None:
    result = call(example, sidecar, "get", *account_args(DEMO_SLACK_ACCOUNT_ID, "slack"))
    assert result.code == 1, result.err
    assert result.out == ["error code=FAILED_PRECONDITION reason=CREDENTIALS_NOT_AVAILABLE"]


def test_validate_dead_account_is_invalid_with_account_dead(
    example: Example, sidecar: Sidecar
) -> None:
    result = call(example, sidecar, "validate", *account_args(DEMO_DEAD_ACCOUNT_ID, "notion"))
    assert result.code == 0, result.err
    assert len(result.out) == 1, result.out
    match = re.fullmatch(r"valid=false problems=([A-Z_,]+)", result.out[0])
    assert match, result.out
    assert "ACCOUNT_DEAD" in match.group(1).split(",")


def test_validate_healthy_account_is_valid(example: Example, sidecar: Sidecar) -> None:
    result = call(example, sidecar, "validate", *account_args(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert result.code == 0, result.err
    assert result.out == ["valid=true problems="]


def test_refresh_token_reports_refresh_and_expiry(example: Example, sidecar: Sidecar) -> None:
    result = call(example, sidecar, "refresh", "--connection", "default", "--force")
    assert result.code == 0, result.err
    assert len(result.out) == 1, result.out
    # Forced refreshes fetch at most once per connection per 10 s: the languages run one
    # after another against one sidecar, so only the first sees refreshed=true.
    assert re.fullmatch(
        r"refreshed=(true|false) expires_at=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result.out[0]
    ), result.out


def test_unknown_account_reads_account_not_found(example: Example, sidecar: Sidecar) -> None:
    result = call(example, sidecar, "get", *account_args("apn_noSuchAccount1", "notion"))
    assert result.code == 1, result.err
    assert result.out == ["error code=NOT_FOUND reason=ACCOUNT_NOT_FOUND"]


def test_malformed_ids_read_invalid_request_with_violations(
    example: Example, sidecar: Sidecar
) -> None:
    args = ["--project", "nope", "--account", "x", "--source", "notion"]
    result = call(example, sidecar, "get", *args)
    assert result.code == 1, result.err
    assert result.out == ["error code=INVALID_ARGUMENT reason=INVALID_REQUEST"]
    assert "violation: account.project_id" in result.err


def test_rate_limited_call_is_retried_after_retry_info(example: Example, sidecar: Sidecar) -> None:
    # A fresh account (nothing cached), and Pipedream answering its lookup once
    # with 429 Retry-After: 1: the sidecar says RESOURCE_EXHAUSTED, reason
    # RATE_LIMITED, RetryInfo 1 s; the example waits that long and succeeds.
    account = f"apn_retry{example.lang.capitalize()}{time.monotonic_ns() % 10**9}"
    sidecar.control("POST", "accounts", {"app": "notion", "id": account})
    sidecar.control(
        "POST", "faults", {"route": "account", "status": 429, "count": 1, "retry_after": "1"}
    )
    try:
        started = time.monotonic()
        result = call(example, sidecar, "get", *account_args(account, "notion"))
        elapsed = time.monotonic() - started
    finally:
        sidecar.control("DELETE", "faults?route=account")
    assert result.code == 0, result.err
    token = demo_token(sidecar, account)
    assert result.out == [f"credentials access_token={token} fields={FIELDS}"]
    retry_line = r"retrying in 1\.000s: code=RESOURCE_EXHAUSTED reason=RATE_LIMITED"
    assert re.search(retry_line, result.err), result.err
    assert elapsed >= 1.0


def test_help_exits_zero_and_names_the_commands(example: Example, sidecar: Sidecar) -> None:
    result = call(example, sidecar, "--help")
    assert result.code == 0, result.err
    text = "\n".join(result.out).lower()
    assert "usage" in text
    for command in ("get", "validate", "refresh"):
        assert command in text, result.out


def test_sidecar_down_prints_why(example: Example, sidecar: Sidecar) -> None:
    # Nothing listens on that port: the error line, and on stderr the reason in words.
    down = f"127.0.0.1:{free_port()}"
    result = call(example, sidecar, "--target", down, "refresh")
    assert result.code == 1, result.err
    assert result.out == ["error code=UNAVAILABLE reason=-"], result.out
    assert "refused" in result.err.lower(), result.err


def test_watch_prints_the_rotated_token(example: Example, sidecar: Sidecar) -> None:
    # A fresh account per language whose token Pipedream (the emulator) replaces
    # every 4 s: the example watches it and must print the first token, then the
    # new one, pushed by the sidecar while the first still works.
    account = f"apn_watch{example.lang.capitalize()}{time.monotonic_ns() % 10**9}"
    sidecar.control("POST", "accounts", {"app": "notion", "id": account})
    rotating = sidecar.control(
        "POST", f"accounts/{DEMO_PROJECT_ID}/{account}/rotation", {"lifetime": 6, "lead": 2}
    )
    assert isinstance(rotating, dict)
    first_token = rotating["credentials"]["oauth_access_token"]
    result = call(example, sidecar, "watch", "--count", "2", *account_args(account, "notion"))
    assert result.code == 0, result.err
    line = r"watch access_token=(ntn_demo_\S+) expires_at=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"
    matches = [re.fullmatch(line, out) for out in result.out]
    assert len(matches) == 2 and all(matches), result.out
    (first, first_expiry), (second, second_expiry) = (m.groups() for m in matches if m)
    assert first == first_token
    assert second != first and second_expiry > first_expiry
    # The new token is the live one at the source.
    request = urllib.request.Request(
        f"{sidecar.emulator_url}/source/v1/users/me", headers={"Authorization": f"Bearer {second}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
