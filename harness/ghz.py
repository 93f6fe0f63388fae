"""ghz: installed pinned into .tools/bin, run against loopback TCP, read as JSON.

ghz is a Go program, installed with ``go install github.com/bojand/ghz/cmd/ghz@VERSION``
(the Go module proxy serves v0.120.0 though its version list shows only v0.93.0). A binary
built that way prints ``dev`` for ``--version``; ``go version -m`` tells the module version,
and that is what is checked.

Traps met on the way:
- ghz looks methods up by reflection as ``pkg.Service.Method``; grpcio-reflection alone
  answers only for services and files ("Symbol not found"). The sidecar's reflection
  (pdsidecar.api.reflection) answers for methods, and tests/peers runs ghz that way; the
  benchmark still gives ghz a protoset built from the very descriptors the server runs
  with, so no run depends on reflection.
- ghz leaves failed calls out of the latency figures unless ``--count-errors`` is set; it is.
- ``--skipFirst`` leaves calls out of the count but not out of the elapsed time, so the RPS
  it reports is too low; warm-ups here are separate ghz runs instead.
- With ``-z``, the default ``--duration-stop close`` cuts the calls in flight at the end
  and counts them as errors; ``wait`` is used.
- ghz cannot dial Unix sockets (its issue #454): loopback TCP only.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

GHZ_MODULE = "github.com/bojand/ghz"
GHZ_VERSION = "v0.120.0"


def ghz_version(binary: Path) -> str | None:
    """The module version the binary was built from, per ``go version -m``."""
    go = shutil.which("go")
    if go is None or not binary.exists():
        return None
    out = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "mod" and parts[1] == GHZ_MODULE:
            return parts[2]
    return None


def ensure_ghz(tools_bin: Path) -> Path:
    """``tools_bin/ghz`` at the pinned version, installing it with ``go install`` if needed."""
    binary = tools_bin / "ghz"
    if ghz_version(binary) == GHZ_VERSION:
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("ghz needs Go (go install); install Go 1.21+ and run again")
    tools_bin.mkdir(parents=True, exist_ok=True)
    print(f"installing ghz {GHZ_VERSION} into {tools_bin} (go install)...", flush=True)
    env = {**os.environ, "GOBIN": str(tools_bin.resolve())}
    subprocess.run([go, "install", f"{GHZ_MODULE}/cmd/ghz@{GHZ_VERSION}"], env=env, check=True)
    found = ghz_version(binary)
    if found != GHZ_VERSION:
        raise RuntimeError(f"installed ghz reports version {found}, expected {GHZ_VERSION}")
    return binary


def write_protoset(path: Path, *files: FileDescriptor) -> Path:
    """A FileDescriptorSet of ``files`` and their imports, for ``ghz --protoset``."""
    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd: FileDescriptor) -> None:
        if fd.name in seen:
            return
        for dependency in fd.dependencies:
            add(dependency)
        seen.add(fd.name)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        out.file.append(proto)

    for fd in files:
        add(fd)
    path.write_bytes(out.SerializeToString())
    return path


@dataclass
class GhzResult:
    call: str
    count: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    average_ms: float
    slowest_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    seconds: float
    latencies_ms: list[float]
    # CPU seconds ghz itself used (from the rusage of reaped children; approximate when
    # several ghz run at once).
    client_cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get("OK", 0)

    @property
    def failed(self) -> int:
        return self.count - self.ok

    def summary(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "count": self.count,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "average_ms": round(self.average_ms, 3),
            "slowest_ms": round(self.slowest_ms, 3),
            "ok": self.ok,
            "failed": self.failed,
            "statuses": self.statuses,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "client_cpu_s": round(self.client_cpu_s, 2),
        }


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def parse(call: str, data: dict[str, Any]) -> GhzResult:
    details = data.get("details") or []
    latencies = [d["latency"] / 1e6 for d in details]
    dist = {int(d["percentage"]): d["latency"] / 1e6 for d in data.get("latencyDistribution") or []}
    statuses = dict(data.get("statusCodeDistribution") or {})
    return GhzResult(
        call=call,
        count=int(data["count"]),
        rps=float(data["rps"]),
        # ghz's own distribution (over the calls it tallied); recomputed from the details
        # when it gave none (e.g. every call failed).
        p50_ms=dist.get(50, percentile(latencies, 50)),
        p90_ms=dist.get(90, percentile(latencies, 90)),
        p99_ms=dist.get(99, percentile(latencies, 99)),
        average_ms=data["average"] / 1e6,
        slowest_ms=data["slowest"] / 1e6,
        statuses=statuses,
        errors=dict(data.get("errorDistribution") or {}),
        seconds=data["total"] / 1e9,
        latencies_ms=latencies,
    )


class Ghz:
    def __init__(self, binary: Path, protoset: Path, tmp: Path, cpus: str | None) -> None:
        self.binary = binary
        self.protoset = protoset
        self.tmp = tmp
        self.cpus = cpus
        self._runs = 0
        self._cpu_at_start = 0.0

    def command(
        self,
        target: str,
        call: str,
        *,
        data: Any = None,
        data_file: Path | None = None,
        concurrency: int = 50,
        connections: int = 1,
        duration: float | None = None,
        total: int | None = None,
        timeout: float = 20.0,
        output: Path,
    ) -> list[str]:
        command = [
            str(self.binary),
            "--insecure",
            "--protoset",
            str(self.protoset),
            "--call",
            call,
            "-c",
            str(concurrency),
            "--connections",
            str(connections),
            "--timeout",
            f"{timeout}s",
            "--count-errors",
            "-O",
            "json",
            "-o",
            str(output),
        ]
        # Every CPU when unpinned: the benchmark's own affinity would be inherited.
        cpus = self.cpus or f"0-{(os.cpu_count() or 1) - 1}"
        command = ["taskset", "-c", cpus, *command, "--cpus", str(_cpu_count(cpus))]
        if duration is not None:
            # "wait": calls in flight when the time is up finish and count; the default
            # ("close") cuts them off and reports them as errors.
            command += ["-z", f"{duration}s", "--duration-stop", "wait"]
        if total is not None:
            command += ["-n", str(total)]
        if data_file is not None:
            command += ["-D", str(data_file)]
        else:
            command += ["-d", json.dumps(data if data is not None else {})]
        return [*command, target]

    def start(self, target: str, call: str, **options: Any) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ghz; ``finish`` reads its result."""
        self._runs += 1
        output = self.tmp / f"ghz-{self._runs}.json"
        command = self.command(target, call, output=output, **options)
        self._cpu_at_start = _children_cpu()
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        return proc, output

    def finish(self, call: str, proc: subprocess.Popen[bytes], output: Path) -> GhzResult:
        _, stderr = proc.communicate()
        if proc.returncode != 0 or not output.exists():
            raise RuntimeError(f"ghz failed ({proc.returncode}): {stderr.decode()[-2000:]}")
        result = parse(call, json.loads(output.read_text()))
        result.client_cpu_s = _children_cpu() - self._cpu_at_start
        return result

    def run(self, target: str, call: str, **options: Any) -> GhzResult:
        proc, output = self.start(target, call, **options)
        return self.finish(call, proc, output)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_count(cpus: str) -> int:
    count = 0
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count
