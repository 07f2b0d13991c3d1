"""``python -m tests.scale_show [--events N] [--projects N] [--workers N] [--kill] [--seed S]``

The show at full size (1,000 events across 200 projects by default) on the real broker,
PostgreSQL and Redis; prints what it did and every problem found. Exit 0 when none.
"""

from __future__ import annotations

import argparse
import sys

from tests.scale_show.show import Options, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.scale_show", description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kill", action="store_true", help="SIGKILL one worker mid-run")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    options = Options(
        events=args.events,
        projects=args.projects,
        workers=args.workers,
        partitions=args.partitions,
        concurrency=args.concurrency,
        kill=args.kill,
        seed=args.seed,
    )
    result = run(options)
    print(
        f"seed {result.seed}: {result.publications} events ({result.copies} copies), "
        f"{options.projects} projects, {options.workers} workers"
        f"{f', worker pid {result.killed} killed and replaced' if result.killed else ''}: "
        f"{result.outcomes} outcomes, {result.vendor_projects} vendor projects, "
        f"{result.out_of_order} projects out of order, {result.seconds:.1f} s; "
        f"events processed by each worker: {result.worked}"
    )
    for problem in result.problems[:40]:
        print(f"  PROBLEM {problem}")
    if len(result.problems) > 40:
        print(f"  ... and {len(result.problems) - 40} more")
    if result.directory:
        print(f"  worker logs: {result.directory}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
