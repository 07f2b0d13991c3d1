"""Pacing benchmark: does the client-side ``Pacer`` keep us under each tool's limit while
still using the allowance?

For each tool, a fake of the vendor, served from a process of its own like a real vendor,
enforces a (scaled-down) rate limit server-side, a ``Pacer`` is configured with the very
same limit, and several threads push ``--calls``
adapter calls through it at once, so the pacer, not the caller, sets the pace. Each call is
``clients_named(...)`` against a handful of seeded clients: one page, so exactly one GET.
Retries use the production policy (``default_retrying()``), so a throttled call would be
re-sent, counted and visible.

    .venv/bin/python -m bench.pacing                  # all three tools
    .venv/bin/python -m bench.pacing --only toggl --calls 100
    .venv/bin/python -m bench.pacing --limit harvest=100/3

Figures printed per tool:

- requests: HTTP requests the fake received (calls plus any retries);
- throttled: 429s (and Toggl's 402 quota answers) the fake sent back; the goal is 0;
- elapsed: wall time for all calls, and calls / elapsed;
- paced rate: the pace the fake saw, ``calls / mean(t[i + calls] - t[i])`` over the
  arrival times ``t`` it accepted. A sliding window lets the first ``calls`` through at
  once and a short run ends on a burst, so ``calls / elapsed`` overstates the sustained
  rate; the gap from each request to the one ``calls`` later does not. "of limit" is that
  rate as a share of calls/period; the goal is >= 90%;
- tightest: the shortest of those gaps, i.e. the closest the fake came to throttling; it
  must stay >= the period.

Several workers on one account, paced on one budget in Redis: ``bench.shared_budget``.

Then (``bench.provisioning``, skipped with ``--no-provisioning``) the vendor calls one
provisioning costs per tool, before (the adapters of ``--before``, default ``main``) and
after, and runs of provisionings against free Toggl and Clockify workspaces (30 requests an
hour, the hour scaled to ``--hour`` seconds), where the goal is 0 refusals.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from types import SimpleNamespace
from typing import Any

from adapters.http import default_retrying
from adapters.pacing import Pacer
from fakes.base import FakeVendor, Request, Response

THROTTLE_STATUSES = frozenset({429, 402})  # 402: Toggl's hourly quota
SEED_CLIENTS = ("Acme", "Globex", "Initech")

# Scaled-down limits (calls, seconds), chosen so that 300 calls take about 5-15 s per tool.
# Clockify runs at its documented 50/1 s. Harvest's 100/15 s keeps its shape (a large burst,
# then a long window) at 50/1.5 s. Toggl's 1/1 s would take 5 minutes; 25/1 s keeps its
# one-second window. Periods under ~0.5 s would measure the pacer's fixed 50 ms margin, not
# its pacing.
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "harvest": (50, 1.5),
    "toggl": (25, 1.0),
    "clockify": (50, 1.0),
}
DOCUMENTED = {"harvest": "100/15s", "toggl": "1/1s", "clockify": "50/1s"}


def _fake(tool_name: str, limit: tuple[int, float]) -> FakeVendor:
    if tool_name == "harvest":
        from fakes.harvest import FakeHarvest
        from tests.integration.harnesses.harvest import ACCOUNT_ID, TOKEN

        return FakeHarvest(ACCOUNT_ID, TOKEN, rate_limit=limit)
    if tool_name == "toggl":
        from fakes.toggl import FakeToggl

        # Enterprise: no hourly quota here; the quota has its own table below.
        return FakeToggl(rate_limit=limit, plan="enterprise")
    from fakes.clockify import FakeClockify

    return FakeClockify(rate_limit=limit)


def _tool(tool_name: str, fake: SimpleNamespace, pacer: Pacer) -> Any:
    """The adapter as the conformance harness builds it, with production retries."""
    if tool_name == "harvest":
        from tests.integration.harnesses.harvest import HarvestHarness as Harness
    elif tool_name == "toggl":
        from tests.integration.harnesses.toggl import TogglHarness as Harness
    else:
        from tests.integration.harnesses.clockify import ClockifyHarness as Harness
    return Harness(fake).tool(retrying=default_retrying(), pacer=pacer)  # type: ignore[arg-type]


def serve_fake(tool_name: str, limit: tuple[int, float], conn: Connection) -> None:
    """In a process of its own, like a real vendor: the fake's work does not compete with
    the adapter's threads for the GIL, so it does not delay requests the pacer let go."""
    fake = _fake(tool_name, limit)
    for name in SEED_CLIENTS:
        fake.add_client(name)
    arrivals = _record_arrivals(fake)
    fake.start()
    keys = ("token", "workspace_id", "api_key", "plan")
    conn.send({"origin": fake.origin} | {k: getattr(fake, k) for k in keys if hasattr(fake, k)})
    conn.recv()  # the run is over
    with fake.lock:
        statuses = [status for _, _, status in fake.log]
    conn.send((statuses, list(arrivals)))
    fake.stop()


TOOLS = ("harvest", "toggl", "clockify")


@dataclass
class Result:
    tool: str
    limit: tuple[int, float]
    calls: int
    requests: int
    throttled: int
    failed: int
    elapsed: float
    paced_rate: float
    window: float  # the pacer's, a little wider than the period
    tightest: float  # the shortest time in which ``calls`` accepted requests arrived

    @property
    def allowed_rate(self) -> float:
        return self.limit[0] / self.limit[1]

    @property
    def share(self) -> float:
        return self.paced_rate / self.allowed_rate


def _record_arrivals(fake: FakeVendor) -> list[tuple[float, int]]:
    """(time, status) of each request, stamped as the fake starts handling it: where the
    fake counts arrivals against its limit."""
    arrivals: list[tuple[float, int]] = []
    lock = threading.Lock()
    handle = fake.handle

    def stamped(request: Request) -> Response:
        arrived = time.monotonic()
        response = handle(request)
        with lock:
            arrivals.append((arrived, response.status))
        return response

    fake.handle = stamped  # type: ignore[method-assign]
    return arrivals


def run_one(tool_name: str, limit: tuple[int, float], calls: int, threads: int) -> Result:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_fake, args=(tool_name, limit, theirs), daemon=True)
    server.start()
    try:
        fake = SimpleNamespace(**ours.recv())
        pacer = Pacer(*limit)  # configured exactly as the fake enforces it
        tool = _tool(tool_name, fake, pacer)
        failures = 0
        with ThreadPoolExecutor(max_workers=threads) as pool:
            started = time.monotonic()
            futures = [pool.submit(tool.clients_named, "Globex") for _ in range(calls)]
            for future in futures:
                try:
                    if len(future.result()) != 1:
                        failures += 1
                except Exception:  # counted and reported, not hidden
                    failures += 1
            elapsed = time.monotonic() - started
        ours.send("done")
        statuses, arrivals = ours.recv()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    requests = len(statuses)
    # What the fake counted: accepted arrivals. With a sliding window of ``calls`` per
    # ``period``, each accepted request may start no sooner than ``period`` after the one
    # ``calls`` before it; the mean of those gaps is the pace kept, their minimum the
    # closest we came to the limit.
    counted = sorted(t for t, status in arrivals if status not in THROTTLE_STATUSES)
    c = limit[0]
    gaps = [later - earlier for earlier, later in zip(counted, counted[c:], strict=False)]
    paced = c / (sum(gaps) / len(gaps)) if gaps else float("nan")
    return Result(
        tool=tool_name,
        limit=limit,
        calls=calls,
        requests=requests,
        throttled=sum(1 for s in statuses if s in THROTTLE_STATUSES),
        failed=failures,
        elapsed=elapsed,
        paced_rate=paced,
        window=pacer.window,
        tightest=min(gaps) if gaps else float("nan"),
    )


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def _fmt_limit(limit: tuple[int, float]) -> str:
    return f"{limit[0]}/{limit[1]:g}s"


def table(results: list[Result]) -> str:
    header = (
        "tool",
        "limit (fake = pacer)",
        "documented",
        "pacer window",
        "calls",
        "requests",
        "throttled",
        "failed",
        "elapsed",
        "calls/s",
        "paced rate",
        "of limit",
        "tightest",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.tool,
                f"{_fmt_limit(r.limit)} = {r.allowed_rate:.1f}/s",
                DOCUMENTED[r.tool],
                f"{r.window:.3f}s",
                str(r.calls),
                str(r.requests),
                str(r.throttled),
                str(r.failed),
                f"{r.elapsed:.2f}s",
                f"{r.calls / r.elapsed:.1f}",
                f"{r.paced_rate:.2f}/s",
                f"{r.share:.1%}",
                f"{r.tightest:.3f}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = {0, 1, 2}
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _parse_limit(text: str) -> tuple[str, tuple[int, float]]:
    try:
        tool, spec = text.split("=", 1)
        calls, seconds = spec.split("/", 1)
        limit = (int(calls), float(seconds.removesuffix("s")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TOOL=CALLS/SECONDS, got {text!r}") from None
    if tool not in TOOLS:
        raise argparse.ArgumentTypeError(f"unknown tool {tool!r}")
    return tool, limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pacing", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--calls", type=int, default=300, help="adapter calls per tool (300)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent callers (8)")
    parser.add_argument("--only", choices=TOOLS, action="append", help="tool(s) to run")
    parser.add_argument(
        "--limit", type=_parse_limit, action="append", default=[], help="override, e.g. toggl=5/1"
    )
    parser.add_argument("--no-provisioning", action="store_true", help="pacing table only")
    parser.add_argument("--before", default="main", help="git revision of 'before' (main)")
    parser.add_argument("--team", type=int, default=3, help="team members per offering (3)")
    parser.add_argument("--provisionings", type=int, default=12, help="per quota run (12)")
    parser.add_argument("--hour", type=float, default=5.0, help="a scaled hour, seconds (5)")
    args = parser.parse_args(argv)
    limits = DEFAULT_LIMITS | dict(args.limit)
    tools = args.only or list(TOOLS)

    print(f"pacing benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    print(f"machine: {machine()}")
    print(
        f"{args.calls} clients_named() calls per tool (one GET each), {args.threads} threads;"
        " the fake enforces the limit\nand the Pacer is set to the same limit;"
        " retries: default_retrying(); tightest must stay >= the period",
        flush=True,
    )
    results = []
    for tool in tools:
        print(f"  running {tool} at {_fmt_limit(limits[tool])} ...", file=sys.stderr, flush=True)
        results.append(run_one(tool, limits[tool], args.calls, args.threads))
    print()
    print(table(results))
    ok = all(r.throttled == 0 and r.failed == 0 and r.share >= 0.9 for r in results)
    print()
    print("goal (0 throttled, 0 failed, >= 90% of limit):", "met" if ok else "NOT met")
    for r in results:
        if r.requests - r.throttled != r.calls:  # a call that paged would skew every figure
            print(f"warning: {r.tool} sent {r.requests - r.throttled} requests for {r.calls} calls")
            ok = False
    if not args.no_provisioning:
        ok = provisioning_figures(args) and ok
    return 0 if ok else 1


def provisioning_figures(args: argparse.Namespace) -> bool:
    import tempfile
    from pathlib import Path

    from bench import provisioning as p

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        package = p.adapters_at(args.before)
        before = [p.calls_per_provisioning(t, package, args.team, directory) for t in p.TOOLS]
        after = [p.calls_per_provisioning(t, None, args.team, directory) for t in p.TOOLS]
        print()
        print(p.calls_table(before, after, args.before, args.team))
        quotas = [
            p.hourly_quota(t, args.provisionings, args.team, args.hour, directory)
            for t in ("toggl", "clockify")
        ]
    print()
    print(p.quota_table(quotas))
    ok = all(q.refused == 0 and q.failed == 0 for q in quotas)
    print()
    print("goal (0 refused, 0 failed on the hourly quotas):", "met" if ok else "NOT met")
    return ok


if __name__ == "__main__":
    sys.exit(main())
