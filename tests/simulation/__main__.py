"""``python -m tests.simulation``: a long run, or a replay of one seed.

python -m tests.simulation --schedules 10000          # a long run, new seed
python -m tests.simulation --seed 1234 --schedules 300  # replay what CI ran
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tests.simulation.run import new_seed, replay_command, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__)
    parser.add_argument("--schedules", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=25, help="most steps per schedule")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one")
    parser.add_argument("--no-shrink", action="store_true", help="report the first failure as is")
    parser.add_argument("--verbose", action="store_true", help="the sidecars' log lines too")
    args = parser.parse_args()
    if not args.verbose:
        logging.disable(logging.WARNING)
    chosen = args.seed if args.seed is not None else new_seed()
    replay = replay_command(chosen, args.schedules, args.steps)
    print(f"simulation: seed {chosen}, {args.schedules} schedules; replay: {replay}", flush=True)
    started = time.perf_counter()
    try:
        run(chosen, args.schedules, args.steps, shrink=not args.no_shrink)
    except BaseException:
        print(f"simulation: FAILED (seed {chosen}); replay: {replay}", flush=True)
        raise
    took = time.perf_counter() - started
    print(f"simulation: {args.schedules} schedules passed in {took:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
