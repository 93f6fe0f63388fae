"""Each language's conformance driver: where it lives, how it is built, how it runs.

The languages are listed here, explicitly: a driver whose source is not in the tree yet is
"not built yet" (skipped; under CI=true that fails, like a missing toolchain). Builds are
skipped when the output is newer than every source it is made from (TypeScript, Java), or
left to the toolchain's own cache (Go).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LANGS = ("python", "go", "ts", "java")
BUILD_TIMEOUT = 600


@dataclass
class Driver:
    """One language's driver: the command before the scenario, or why there is none."""

    lang: str
    argv: list[str] = field(default_factory=list)
    missing: str | None = None  # a toolchain is not installed, or the driver not written yet
    build_error: str | None = None
    build_seconds: float = 0.0


def _run(cmd: list[str], cwd: Path) -> str | None:
    """A build step: None when it succeeds, else what it said."""
    done = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode == 0:
        return None
    return f"$ {' '.join(cmd)} (in {cwd}) -> {done.returncode}\n{done.stdout}\n{done.stderr}"


def _newest(paths: Iterable[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def _fresh(output: Path, sources: Iterable[Path]) -> bool:
    return output.exists() and output.stat().st_mtime >= _newest(sources)


def _python(_: Path) -> Driver:
    script = ROOT / "client/python/examples/conformance_driver.py"
    if not script.exists():
        return Driver("python", missing=f"not built yet: {script.relative_to(ROOT)} is missing")
    return Driver("python", [sys.executable, str(script)])


def _go(out: Path) -> Driver:
    source = ROOT / "client/go/cmd/pdsidecar-conformance"
    if not source.is_dir():
        return Driver("go", missing=f"not built yet: {source.relative_to(ROOT)}/ is missing")
    go = shutil.which("go")
    if not go:
        return Driver("go", missing="Go toolchain not found ('go' is not on PATH)")
    binary = out / "pdsidecar-conformance-go"
    error = _run(
        [go, "build", "-o", str(binary), "./cmd/pdsidecar-conformance"], ROOT / "client/go"
    )
    return Driver("go", [str(binary)], build_error=error)


def _ts(_: Path) -> Driver:
    folder = ROOT / "client/ts"
    if not (folder / "conformance/driver.ts").exists():
        return Driver("ts", missing="not built yet: client/ts/conformance/driver.ts is missing")
    node = shutil.which("node")
    if not node:
        return Driver("ts", missing="Node.js not found ('node' is not on PATH)")
    tsc = folder / "node_modules/.bin/tsc"
    if not tsc.exists():
        return Driver(
            "ts", missing="client/ts/node_modules is not installed (scripts/install_toolchain.sh)"
        )
    script = folder / "dist/conformance/driver.js"
    sources = [*folder.glob("src/**/*.ts"), *folder.glob("conformance/**/*.ts")]
    sources += [folder / "tsconfig.json", folder / "package.json"]
    error = None if _fresh(script, sources) else _run([str(tsc), "-p", "."], folder)
    return Driver("ts", [node, str(script)], build_error=error)


def _java(_: Path) -> Driver:
    folder = ROOT / "client/java"
    if not (folder / "conformance").is_dir():
        return Driver("java", missing="not built yet: client/java/conformance/ is missing")
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        return Driver("java", missing="Java or Maven not found ('java'/'mvn' not on PATH)")
    jar = folder / "conformance/target/pdsidecar-conformance.jar"
    sources = [p for p in folder.rglob("*") if "target" not in p.parts and p.suffix != ".class"]
    sources += list((ROOT / "proto").rglob("*.proto"))
    error = (
        None if _fresh(jar, sources) else _run([mvn, "-B", "-q", "-DskipTests", "package"], folder)
    )
    # C1 only: a short-lived CLI starts ~0.3 s faster.
    return Driver("java", [java, "-XX:TieredStopAtLevel=1", "-jar", str(jar)], build_error=error)


BUILDERS: dict[str, Callable[[Path], Driver]] = {
    "python": _python,
    "go": _go,
    "ts": _ts,
    "java": _java,
}


def build(lang: str, out: Path) -> Driver:
    started = time.monotonic()
    driver = BUILDERS[lang](out)
    driver.build_seconds = time.monotonic() - started
    return driver
