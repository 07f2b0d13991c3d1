"""``python -m tests.chaos [--trials N] [--events M] [--seed S] [--broker-restart]
[--lost-webhooks]``

Trial i runs with seed S + i, so ``--seed S+i --trials 1`` re-runs it alone (with
``--lost-webhooks`` for the last one). Exit status 1 when any invariant failed in any trial.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys

from tests.chaos.lost_webhooks import run_lost_webhooks
from tests.chaos.table import render, trial_line
from tests.chaos.trial import Options, run_trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--events", type=int, default=300, help="publications a trial")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument(
        "--broker-restart",
        action="store_true",
        help="restart the broker once in the run (breaks anyone else using it)",
    )
    parser.add_argument(
        "--lost-webhooks",
        action="store_true",
        help="make the last trial the lost-webhooks one (tests.chaos.lost_webhooks)",
    )
    parser.add_argument("--bad-share", type=float, default=Options.bad_share)
    parser.add_argument("--fault-seconds", type=float, default=Options.fault_seconds)
    parser.add_argument("--settle-seconds", type=float, default=Options.settle_seconds)
    parser.add_argument("--retry-delays", default=Options.retry_delays)
    parser.add_argument("--vendor-latency", type=float, default=Options.vendor_latency)
    parser.add_argument("--toggl-rate", default=Options.toggl_rate, help="worker's Toggl pace")
    parser.add_argument("--keep", action="store_true", help="keep every trial's files")
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C: the trial's cleanup kills its worker and
    # deletes its queues on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    options = Options(
        amqp_url=os.environ.get("AMQP_URL", Options.amqp_url),
        events=args.events,
        bad_share=args.bad_share,
        retry_delays=args.retry_delays,
        fault_seconds=args.fault_seconds,
        settle_seconds=args.settle_seconds,
        vendor_latency=args.vendor_latency,
        toggl_rate=args.toggl_rate,
        keep=args.keep,
    )
    chaos_trials = max(1, args.trials - args.lost_webhooks)  # the broker restarts in one of them
    restart_in = random.Random(seed).randrange(chaos_trials) if args.broker_restart else None
    results = []
    for i in range(args.trials):
        if args.lost_webhooks and i == args.trials - 1:
            result = run_lost_webhooks(seed + i, options)
        else:
            result = run_trial(seed + i, options, broker_restart=i == restart_in)
        results.append(result)
        print(trial_line(i, result), flush=True)  # a long run shows its findings as they come
        for failure in result.failures:
            print(f"    {failure.kind}: {failure.detail}", flush=True)
    print()
    print(render(results, seed, args.events))
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
