#!/usr/bin/env bash
# The test suite N times in a row on a busy machine: two CPU-burning processes run beside
# it the whole time (stopped at exit, however the script ends), pytest on two workers as
# scripts/test.sh runs it (PYTEST_WORKERS). Prints pass/fail per run;
# at the end, every test that failed in any run with the runs it failed in, and the
# pass/fail count of every test in $STRESS_DIR/per-test.txt.
#
#   scripts/stress-tests.sh 5                                # the whole suite, 5 times
#   scripts/stress-tests.sh 3 tests/integration/test_watch.py   # pytest arguments pass through
#
# Exit status: 0 when every run passed. Reports (junit XML) stay in $STRESS_DIR
# (default: a new temporary folder, printed at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:?usage: scripts/stress-tests.sh N [pytest args...]}
shift
case $runs in '' | *[!0-9]*) echo "N must be a number: $runs" >&2 && exit 2 ;; esac
scripts/bootstrap.sh  # a no-op when .venv is current
export PATH="$root/.venv/bin:$PATH"
python=$root/.venv/bin/python
out=${STRESS_DIR:-$(mktemp -d /tmp/pdsidecar-stress-XXXXXX)}
mkdir -p "$out"

burners=()
stop_burners() {
  # Only the burners this script started, by pid.
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${burners[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_burners EXIT
trap 'exit 130' INT TERM
for _ in 1 2; do
  # Bounded: each burner ends by itself after 6 hours if the trap never runs.
  "$python" -c 'import time
end = time.monotonic() + 6 * 3600
while time.monotonic() < end:
    pass' &
  burners+=("$!")
done

failed_runs=0
for run in $(seq 1 "$runs"); do
  started=$SECONDS
  if pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" --junit-xml="$out/run-$run.xml" "$@" >"$out/run-$run.log" 2>&1; then
    echo "run $run/$runs: pass ($((SECONDS - started)) s)"
  else
    failed_runs=$((failed_runs + 1))
    echo "run $run/$runs: FAIL ($((SECONDS - started)) s): $(tail -n 1 "$out/run-$run.log")"
  fi
done

"$python" - "$out" "$runs" <<'EOF'
"""Per test: the runs it failed in (from the junit XML of each run)."""
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

out, runs = Path(sys.argv[1]), int(sys.argv[2])
failed: dict[str, list[int]] = defaultdict(list)
tests: set[str] = set()
for run in range(1, runs + 1):
    report = out / f"run-{run}.xml"
    if not report.exists():
        continue
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        tests.add(name)
        if case.find("failure") is not None or case.find("error") is not None:
            failed[name].append(run)
table = [f"{'FAIL' if name in failed else 'pass'} {len(failed.get(name, []))}/{runs} {name}"
         for name in sorted(tests)]
(out / "per-test.txt").write_text("\n".join(table) + "\n")
print(f"{len(tests)} tests, {runs} runs: {len(failed)} failed at least once "
      f"(every test: {out / 'per-test.txt'})")
for name, in_runs in sorted(failed.items()):
    print(f"  FAIL {len(in_runs)}/{runs} {name} (runs {', '.join(map(str, in_runs))})")
EOF
echo "reports: $out"
[ "$failed_runs" -eq 0 ]
