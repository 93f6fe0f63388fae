"""One conformance suite, four languages: every driver runs every scenario against real
sidecars and the emulator, and one table of results comes out (client/SPEC.md).

The module runs everything once, in a module fixture, then one test per
(language, scenario) asserts its cell. To stay near a minute: the drivers build in
parallel while the stack starts; the rate-limited scenario runs alone first (its fault
is the emulator's, for every account read); then every language's long scenarios (two
20 s holds and a reject) start together, and the short ones run beside them.

A language whose driver is not in the tree yet, or whose toolchain is missing, is
skipped with the reason, except under CI=true, where it fails (tests/support/ci.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from pdsidecar_emulator import DEMO_PROJECT_ID

from tests.conformance import drivers
from tests.conformance.drivers import LANGS, Driver
from tests.conformance.scenarios import (
    LEAD,
    LIFETIME,
    LIST_ACCOUNTS,
    LIST_PROJECT,
    RETRY_AFTER,
    SCENARIOS,
    Scenario,
    account_of,
)
from tests.conformance.stack import Stack, start_stack
from tests.support.certs import Certs
from tests.support.ci import missing
from tests.support.logsink import LogSink

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 120.0  # a JVM on a busy 2-core machine can take 30 s to start
WAVE = 6.0  # seconds: holds on the restart sidecar ready this close share one restart
SHORT_WORKERS = 3  # short scenarios at once, beside the long ones (2 cores)


@dataclass
class Cell:
    """One (language, scenario): the driver's result line, or what went wrong."""

    result: dict[str, object] | None = None
    problem: str | None = None  # the run broke, or the check failed
    seconds: float = 0.0


class Run:
    """Runs drivers and records each cell; the restart of the ``restart`` sidecar waits
    until every language's hold on it is ready."""

    def __init__(self, stack: Stack, built: dict[str, Driver]) -> None:
        self.stack = stack
        self.built = built
        self.cells: dict[tuple[str, str], Cell] = {}
        self.restart_seconds: list[float] = []  # each from SIGKILL to the new one listening
        holders = [lang for lang, d in built.items() if not (d.missing or d.build_error)]
        self._restart_ready = {lang: threading.Event() for lang in holders}

    def run(self, lang: str, scenario: Scenario) -> None:
        cell = self.cells[lang, scenario.name] = Cell()
        try:
            self._run(cell, lang, scenario)
        except Exception:  # the harness broke: the cell says how (a pool would hide it)
            cell.problem = f"the harness failed:\n{traceback.format_exc()}"

    def _run(self, cell: Cell, lang: str, scenario: Scenario) -> None:
        driver = self.built[lang]
        argv = [*driver.argv, scenario.command, *scenario.args(self.stack, lang)]
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True)
        reader.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None and proc.stdin is not None
            timer = threading.Timer(RUN_TIMEOUT, proc.kill)
            timer.start()
            try:
                for line in proc.stdout:
                    lines.append(line)
                    if '"ready"' in line:
                        self._on_ready(lang, scenario, proc)
            finally:
                timer.cancel()
            code = proc.wait()
        finally:
            if scenario.name == "hold_restart":  # ended: never keep the others waiting
                self._restart_ready[lang].set()
        reader.join(timeout=5)
        cell.seconds = time.monotonic() - started
        tail = "".join(err)[-3000:]
        if code != 0 or not lines:
            cell.problem = f"driver exited {code}; stdout {lines[-3:]}; stderr:\n{tail}"
            return
        try:
            cell.result = json.loads(lines[-1])
            assert cell.result is not None
            assert (cell.result["lang"], cell.result["scenario"]) == (lang, scenario.command)
            scenario.check(self.stack, lang, cell.result)
        except (AssertionError, ValueError, KeyError, TypeError) as failed:
            cell.problem = f"{type(failed).__name__}: {failed}\nstderr:\n{tail}"

    def _on_ready(self, lang: str, scenario: Scenario, proc: subprocess.Popen[str]) -> None:
        if scenario.name == "reject":
            # The emulator moves to a new token; the driver's object still holds the old one.
            self.stack.control(
                "POST", f"accounts/{DEMO_PROJECT_ID}/{account_of('reject', lang)}/rotate"
            )
            assert proc.stdin is not None
            proc.stdin.write("reject\n")
            proc.stdin.flush()
        elif scenario.name == "hold_restart":
            self._restart_ready[lang].set()

    def restart_mid_hold(self) -> None:
        """Each time holds on the ``restart`` sidecar become ready: SIGKILL it, rotate the
        held accounts while none runs, start it again (only a reconnected object sees the
        new token). Drivers start seconds apart on a busy machine, and a hold lasts 20 s
        from its own start: one restart per wave of ready holds puts one inside every hold."""
        waiting = set(self._restart_ready)
        deadline = time.monotonic() + RUN_TIMEOUT
        while waiting and time.monotonic() < deadline:
            if not any(self._restart_ready[lang].is_set() for lang in waiting):
                time.sleep(0.05)
                continue
            # A wave: the holds ready within WAVE seconds of its first (a hold lasts 20 s).
            wave_ends = time.monotonic() + WAVE
            for lang in waiting:
                self._restart_ready[lang].wait(max(0.0, wave_ends - time.monotonic()))
            time.sleep(0.5)  # let the last of them read the first token for a while
            wave = {lang for lang in waiting if self._restart_ready[lang].is_set()}
            started = time.monotonic()
            self.stack.restart("restart", meanwhile=self._rotate_restart_accounts)
            self.restart_seconds.append(time.monotonic() - started)
            waiting -= wave

    def _rotate_restart_accounts(self) -> None:
        for lang in self._restart_ready:
            path = f"accounts/{DEMO_PROJECT_ID}/{account_of('hold_restart', lang)}/rotate"
            self.stack.control("POST", path)


def prepare(stack: Stack) -> None:
    """The emulator's side: fresh accounts, a rotating token per hold, 23 to list."""
    for lang in LANGS:
        for scenario in ("ratelimited", "reject", "hold_rotation", "hold_restart"):
            stack.control("POST", "accounts", {"app": "notion", "id": account_of(scenario, lang)})
        path = f"accounts/{DEMO_PROJECT_ID}/{account_of('hold_rotation', lang)}/rotation"
        stack.control("POST", path, {"lifetime": LIFETIME, "lead": LEAD})
    listed = stack.control(
        "POST", "accounts/generate", {"n": LIST_ACCOUNTS, "project_id": LIST_PROJECT}
    )
    stack.list_ids = list(listed["ids"])


def run_all(stack: Stack, built: dict[str, Driver]) -> Run:
    run = Run(stack, built)
    ready = [lang for lang in LANGS if not (built[lang].missing or built[lang].build_error)]
    by_name = {s.name: s for s in SCENARIOS}
    # 1. Rate limited, alone: every account read answers 429 meanwhile.
    fault = {"route": "account", "status": 429, "retry_after": str(RETRY_AFTER)}
    stack.control("POST", "faults", fault)
    try:
        with ThreadPoolExecutor(max_workers=len(LANGS)) as pool:
            for lang in ready:
                pool.submit(run.run, lang, by_name["rate_limited"])
    finally:
        stack.control("DELETE", "faults?route=account")
    # 2. The long scenarios of every language together, the short ones beside them.
    long = [s for s in SCENARIOS if s.long]
    short = [s for s in SCENARIOS if not s.long and s.name != "rate_limited"]
    with (
        ThreadPoolExecutor(max_workers=len(long) * len(LANGS) + 1) as long_pool,
        ThreadPoolExecutor(max_workers=SHORT_WORKERS) as short_pool,
    ):
        restart: Future[None] | None = None
        if ready and "hold_restart" in by_name:
            restart = long_pool.submit(run.restart_mid_hold)
        for scenario in long:
            for lang in ready:
                long_pool.submit(run.run, lang, scenario)
        for scenario in short:
            for lang in ready:
                short_pool.submit(run.run, lang, scenario)
        if restart is not None:
            restart.result()  # a failed restart is the harness's error: raise it
    return run


def table(run: Run, built: dict[str, Driver]) -> str:
    names = [s.name for s in SCENARIOS]
    width = max(len(n) for n in names)
    rows = [f"{'':8}" + "".join(f"{n:>{max(width, 10) + 1}}" for n in names)]
    for lang in LANGS:
        driver = built[lang]
        if driver.missing or driver.build_error:
            why = driver.missing or "build failed"
            rows.append(f"{lang:8}{why}")
            continue
        cells = []
        for name in names:
            cell = run.cells.get((lang, name))
            mark = "-" if cell is None else "FAIL" if cell.problem or not cell.result else "pass"
            mark += "" if cell is None else f" {cell.seconds:4.1f}"
            cells.append(f"{mark:>{max(width, 10) + 1}}")
        rows.append(f"{lang:8}" + "".join(cells))
    return "\n".join(rows) + "\n(each cell: the check, and the driver's seconds)"


@dataclass
class Outcome:
    run: Run
    built: dict[str, Driver]
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def outcome(
    tmp_path_factory: pytest.TempPathFactory,
    certs: Certs,
    log_sink: LogSink,
    request: pytest.FixtureRequest,
) -> Iterator[Outcome]:
    started = time.monotonic()
    folder = tmp_path_factory.mktemp("conformance")
    # Unix socket paths are limited to ~100 bytes: a short folder under /tmp.
    sockets = Path(tempfile.mkdtemp(prefix="pdconf-", dir="/tmp"))
    with ThreadPoolExecutor(max_workers=len(LANGS)) as pool:
        builds = {lang: pool.submit(drivers.build, lang, folder) for lang in LANGS}
        stack = start_stack(folder, sockets, certs)
        try:
            prepare(stack)
            built = {lang: future.result() for lang, future in builds.items()}
            up = time.monotonic()
            run = run_all(stack, built)
        finally:
            stack.close(log_sink)
            shutil.rmtree(sockets, ignore_errors=True)
    seconds = {f"{lang} build": d.build_seconds for lang, d in built.items()}
    seconds |= {f"restart {n + 1}": s for n, s in enumerate(run.restart_seconds)}
    seconds |= {"scenarios": time.monotonic() - up}
    seconds |= {"module": time.monotonic() - started}
    result = Outcome(run, built, seconds)
    _report(request, result)
    yield result


def _report(request: pytest.FixtureRequest, outcome: Outcome) -> None:
    timings = ", ".join(f"{name} {s:.1f}s" for name, s in outcome.seconds.items())
    text = f"\nconformance results:\n{table(outcome.run, outcome.built)}\ntimings: {timings}"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
@pytest.mark.parametrize("lang", LANGS)
def test_conformance(outcome: Outcome, lang: str, scenario: str) -> None:
    driver = outcome.built[lang]
    if driver.missing:
        missing(f"{lang}: {driver.missing}")
    if driver.build_error:
        pytest.fail(f"building the {lang} driver failed:\n{driver.build_error}")
    cell = outcome.run.cells[lang, scenario]
    if cell.problem or cell.result is None:
        pytest.fail(f"{lang} {scenario}: {cell.problem}", pytrace=False)
