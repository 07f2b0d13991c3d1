"""``provisioner demo``: the product end to end on the configured broker, no account needed.

It starts a fake Harvest and a worker in this process, in a namespace of its own with a
throw-away SQLite store, plays an afternoon of CRM events (``demo_story``) and prints every
outcome event as it arrives. The fix of a dead letter runs through the real ``clients map``
and ``dlq replay`` commands. At the end it deletes its queues and exchanges (``--keep``
leaves them to look at). Exit 0 when every step's outcomes came, 1 naming the one that did
not.

Nothing reaches a real installation: the namespace is fresh, the store is a temporary file,
and every tool and CRM credential of the environment is dropped for this process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pika
from pika.exceptions import AMQPError

from fakes.harvest import FakeHarvest
from worker.commands import demo_story
from worker.commands.output import FAILED, OK, Fail, settings_or_fail
from worker.topology import Topology, connection_parameters

# Settings the demo never inherits: it must not reach a real tool, CRM, store or rules file.
DROPPED = (
    "PROVISIONER_RULES",
    "TOGGL_API_TOKEN",
    "TOGGL_WORKSPACE_ID",
    "CLOCKIFY_API_KEY",
    "CLOCKIFY_WORKSPACE_ID",
    "HUBSPOT_ACCESS_TOKEN",
    "PIPEDRIVE_API_TOKEN",
    "PIPEDRIVE_BASE_URL",
    "SALESFORCE_INSTANCE_URL",
    "SALESFORCE_ACCESS_TOKEN",
)
COLUMNS = (("TIME", 8), ("EVENT", 21), ("PROJECT", 7), ("OFFERING", 8), ("TOOL", 7))


def register(sub) -> None:
    demo = sub.add_parser(
        "demo", help="play an afternoon of CRM events against a fake Harvest, on the broker"
    )
    demo.add_argument("--namespace", help="default: demo-<random>, a namespace of its own")
    demo.add_argument("--keep", action="store_true", help="leave the queues and exchanges")
    demo.add_argument("--json", action="store_true", help="outcome events as JSON lines")
    demo.add_argument(
        "--timeout", type=float, default=30.0, help="seconds each step may take (default 30)"
    )
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    namespace = args.namespace or f"demo-{uuid.uuid4().hex[:6]}"
    for name in DROPPED:
        os.environ.pop(name, None)
    os.environ["PROVISIONER_NAMESPACE"] = namespace
    settings_or_fail()  # a bad setting (or --namespace) stops it before anything starts
    workdir = Path(tempfile.mkdtemp(prefix="provisioner-demo-"))
    harvest = FakeHarvest().start()
    try:
        failure = _run_story(args, namespace, workdir, harvest)
    finally:
        harvest.stop()
    if failure:  # the state and the worker's log stay, to be read
        raise Fail(f"{failure}; worker log in {workdir / 'worker.log'}", FAILED)
    shutil.rmtree(workdir, ignore_errors=True)
    return OK


def _run_story(args: argparse.Namespace, namespace: str, workdir: Path, harvest: FakeHarvest):
    """The worker and the story on the broker; the reason it stopped, or None."""
    afternoon = demo_story.seed(harvest)
    _demo_environment(namespace, workdir, harvest)
    settings = settings_or_fail()
    topology = Topology(settings.namespace, settings.retry_delays)
    say = _Narrator(args.json)
    say(f"demo in namespace {namespace} on {_shown(settings.amqp_url)}; fake Harvest on "
        f"{harvest.origin}; state in {workdir}")  # fmt: skip
    try:
        outcomes = _Outcomes(settings.amqp_url, topology, say, as_json=args.json)
    except AMQPError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise Fail(f"broker unreachable at {_shown(settings.amqp_url)}: {exc!r}") from None
    worker = _Worker(settings, workdir / "worker.log")
    try:
        failure = _play(demo_story.steps(afternoon), outcomes, worker, say, args.timeout)
    except KeyboardInterrupt:  # Ctrl-C: still stop the worker and clean the namespace up
        failure = "interrupted"
    finally:
        worker.stop()
        outcomes.close(delete=not args.keep)
    if not failure:
        kept = f"; namespace {namespace} kept (--keep)" if args.keep else ""
        say(f"story complete: {outcomes.count} outcome events{kept}")
    return failure


def _play(steps, outcomes: _Outcomes, worker: _Worker, say: _Narrator, timeout: float):
    """Each step in turn; the reason the story stopped, or None when it completed."""
    outcomes.header()
    for number, build in enumerate(steps, 1):
        step = build()
        say("")
        say(f"[{number}/{len(steps)}] {step.narration}")
        since = len(outcomes.seen)
        for event in step.events:
            outcomes.publish(event)
        for argv in step.commands:
            if (status := _command(argv, say)) != OK:
                return f"`provisioner {shlex.join(argv)}` exited {status}"
        missing = outcomes.wait(step.outcomes, since, timeout, worker.alive)
        if missing:
            return f"step {number}: {'; '.join(missing)} (waited up to {timeout:g} s)"
    return None


def _command(argv: list[str], say: _Narrator) -> int:
    """``provisioner ARGV`` through the real parser and command code, its output indented."""
    from worker.commands.main import main

    say(f"  $ provisioner {shlex.join(argv)}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    # dlq's audit records (stderr) would crowd the story; a failing command's reason shows.
    shown = out.getvalue().splitlines() + (err.getvalue().splitlines() if status else [])
    for line in shown:
        say(f"    {line}")
    return status


def _demo_environment(namespace: str, workdir: Path, harvest: FakeHarvest) -> None:
    """This process's settings: the broker as configured, everything else the demo's own."""
    os.environ.update(
        PROVISIONER_NAMESPACE=namespace,
        PROVISIONER_DATABASE_URL=f"sqlite:///{workdir / 'state.db'}",
        PROVISIONER_RETRY_DELAYS="1,5",
        # The demo's worker serves no metrics: the port may be a real worker's on this host.
        PROVISIONER_METRICS_BIND="off",
        HARVEST_ACCOUNT_ID=harvest.account_id,
        HARVEST_ACCESS_TOKEN=harvest.token,
        HARVEST_BASE_URL=f"{harvest.origin}/v2",
    )


def _shown(url: str) -> str:
    from adapters.sql import without_password

    return without_password(url)


class _Narrator:
    """Story lines: stdout beside the table, stderr when stdout carries JSON lines."""

    def __init__(self, as_json: bool):
        self.stream = sys.stderr if as_json else sys.stdout

    def __call__(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class _Worker:
    """The real worker (the production composition root) on a thread of this process."""

    def __init__(self, settings, log_path: Path):
        from worker import bootstrap, logs

        self.log = log_path.open("a")
        logs.configure(secrets=settings.secrets(), stream=self.log)
        self.deps = bootstrap.build_deps(settings)
        self.consumer = bootstrap.build_consumer(settings, self.deps)
        self.thread = threading.Thread(target=self.consumer.run, name="worker", daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(30)
        self.deps.store.close()
        self.log.close()


class _Outcomes:
    """``NS.events`` seen from an exclusive queue bound before anything is published: every
    outcome is printed as it arrives and remembered for the steps' checks."""

    def __init__(self, amqp_url: str, topology: Topology, say: _Narrator, *, as_json: bool):
        self.topology, self.say, self.as_json = topology, say, as_json
        params = connection_parameters(amqp_url, name=f"provisioner demo {topology.namespace}")
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        topology.declare(self.channel)
        self.channel.confirm_delivery()
        queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(queue, topology.events, routing_key="#")
        self.channel.basic_consume(queue, self._arrived, auto_ack=True)
        self.seen: list[tuple[str, str, str | None]] = []
        self.count = 0

    def header(self) -> None:
        if not self.as_json:
            self.say(_row([name for name, _ in COLUMNS] + ["DETAIL"]))

    def publish(self, event: dict) -> None:
        properties = pika.BasicProperties(
            content_type="application/cloudevents+json",
            delivery_mode=2,
            message_id=event["id"],
            type=event["type"],
        )
        body = json.dumps(event).encode()
        self.channel.basic_publish(
            self.topology.inbound, event["type"], body, properties, mandatory=True
        )

    def wait(self, wanted, since: int, timeout: float, alive) -> list[str]:
        """Waits until every wanted outcome was seen since index ``since`` of ``seen``;
        returns what went wrong: outcomes missing, a failure nobody expected, a dead worker."""
        deadline = time.monotonic() + timeout
        while True:
            new = self.seen[since:]
            missing = [_named(w, "no") for w in wanted if w not in new]
            failed = [
                _named(s, "unexpected")
                for s in new
                if s[0] == "timesheet.failed" and s not in wanted
            ]
            if failed or not alive():
                return failed + ([] if alive() else ["the worker stopped (see its log)"])
            if not missing or time.monotonic() > deadline:
                return missing
            self.connection.process_data_events(time_limit=0.1)

    def _arrived(self, channel, method, properties, body: bytes) -> None:
        event = json.loads(body)
        data = event.get("data") or {}
        self.seen.append((event["type"], data.get("project_id"), data.get("offering_id")))
        self.count += 1
        if self.as_json:
            print(json.dumps(event), flush=True)
            return
        at = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).astimezone(UTC)
        cells = [at.strftime("%H:%M:%S"), event["type"], data.get("project_id"),
                 data.get("offering_id"), data.get("tool")]  # fmt: skip
        self.say(_row([c or "-" for c in cells] + [_detail(event["type"], data)]))

    def close(self, *, delete: bool) -> None:
        with contextlib.suppress(AMQPError):
            if delete:
                self._delete_namespace()
            self.connection.close()

    def _delete_namespace(self) -> None:
        self.topology.delete(self.channel)


def _named(outcome: tuple, prefix: str) -> str:
    return " ".join([prefix, *(part for part in outcome if part)])


def _row(cells: list[str]) -> str:
    widths = [w for _, w in COLUMNS]
    fixed = "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False))
    return f"{fixed}  {cells[-1]}".rstrip()


def _detail(kind: str, data: dict) -> str:
    """What a person wants from each outcome, in a few words."""
    if kind == "project.activated":
        return "offerings " + ", ".join(data.get("offering_ids", []))
    if kind in ("timesheet.provisioned", "timesheet.connected"):
        assigned, missing = data.get("team_assigned", []), data.get("team_missing", [])
        verb = "connected" if kind.endswith("connected") else "created"
        if kind.endswith("provisioned") and not data.get("created", True):
            verb = "adopted"
        client, team = data.get("timesheet_client_id"), f"{len(assigned)}/{len(assigned + missing)}"
        return f"{verb} {data.get('timesheet_url')} (client {client}, team {team})"
    if kind == "timesheet.skipped":
        return data.get("reason", "")
    if kind in ("dlq.replayed", "dlq.discarded"):
        letters = data.get("letters", [])
        codes = ", ".join(sorted({str(x.get("error_code")) for x in letters}))
        return f"{len(letters)} dead letter(s) by {data.get('by')} ({codes})"
    if kind == "timesheet.failed":
        end = ", dead-lettered" if data.get("dead_lettered") else ""
        return f"{data.get('code')}{end}: {data.get('message')}"
    return f"project {data.get('timesheet_project_id')}"
