"""Throughput and latency of the webhook ingress on the local RabbitMQ, next to a raw pika
loop publishing the same messages.

``python -m bench.ingress [--clients 64] [--duration 10] [--rounds 3] [--quick]``

Every round gets a fresh random namespace (the real topology: ``NS.inbound`` routed to the
quorum queue ``NS.worker``, so a confirm means the quorum queue has the message), deleted
afterwards, and measures in turn:

(a) loop: one BlockingConnection with ``confirm_delivery``; for ``--duration`` seconds it
    publishes the ``crm.deal_changed`` messages that the requests of (c) give, one at a
    time, each call returning once the broker confirmed it. messages/s.
(b) ceiling: ``wrk`` with ``--clients`` connections on ``GET /healthz`` of the same running
    ingress: what the load generator and the HTTP stack reach without signatures, parsing
    or the broker. It must be above (a) and (c), or (c) measured the generator.
(c) ingress: ``provisioner ingress`` as a separate process; ``wrk`` with ``--clients``
    connections sending signed HubSpot requests (one deal event each, each request
    different, pre-signed within the 5-minute window and read from a generated Lua script
    that cycles through them). requests/s, latency percentiles, non-2xx count.
(d) half load: the same at half the rate (c) reached, paced with wrk's ``delay()`` per
    connection (jittered ±50 % so that the connections do not fall into step and arrive in
    bursts; set once, corrected once by the latency the first try met); the p99 latency
    there, and from the ingress's access lines how much of it was the wait for the
    broker's confirms and how much the server's own work.

wrk is closed-loop: its latencies do not count the requests a slow server kept it from
sending (coordinated omission), which (d) keeps small by running well below saturation.
Goals: (c) >= 1.0x (a) at 64 clients; p99 of (d) < 50 ms; (b) above both. The exit status
is 0 whenever the benchmark ran, goals met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pika

from tests import crm_webhooks as crm
from tests.e2e.ingress import free_port, request
from worker.ingress import hubspot
from worker.topology import Topology, connection_parameters, declare_all

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
DELAYS = (10.0, 60.0)
PATH = "/webhooks/hubspot"


@dataclass
class Wrk:
    rps: float
    requests: int
    non_2xx: int
    errors: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    server: dict | None = None  # p99s from the ingress's own access lines


def server_side(log: Path, offset: int) -> dict:
    """p99 of the time in the server and of its wait for the broker's confirms, from the
    access lines written since ``offset``: says how much of wrk's p99 is the broker."""
    with log.open("rb") as f:
        f.seek(offset)
        lines = [json.loads(x) for x in f if x.startswith(b"{") and b'"confirm_ms"' in x]
    if not lines:
        return {"n": 0, "total": float("nan"), "confirm": float("nan"), "own": float("nan")}

    def p99(values: list[float]) -> float:
        return sorted(values)[int(len(values) * 0.99)]

    return {
        "n": len(lines),
        "total": p99([x["duration_ms"] for x in lines]),
        "confirm": p99([x["confirm_ms"] for x in lines]),
        "own": p99([x["duration_ms"] - x["confirm_ms"] for x in lines]),
    }


def signed_requests(count: int, secret: str, origin: str) -> list[tuple[bytes, dict]]:
    out = []
    for _ in range(count):
        body = crm.dumps([crm.hubspot_deal_event(62515)])
        out.append((body, crm.hubspot_v3_headers(secret, "POST", origin + PATH, body)))
    return out


def lua_script(requests: list[tuple[bytes, dict]], delay_ms: float | None) -> str:
    entries = []
    for body, headers in requests:
        head = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
        entries.append(f"{{ {{{head}}}, [==[{body.decode()}]==] }}")
    # Jitter around the mean, so the connections do not fall into step and arrive in bursts.
    pacing = ""
    if delay_ms:
        pacing = f"function delay() return {delay_ms:.3f} * (0.5 + math.random()) end\n"
    return (
        "local requests = {\n" + ",\n".join(entries) + "\n}\n"
        # Each wrk thread has its own Lua state: start them at different places.
        "local i = math.random(#requests)\n"
        "function request()\n  i = i % #requests + 1\n"
        f'  return wrk.format("POST", "{PATH}", requests[i][1], requests[i][2])\nend\n' + pacing
    )


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def wrk(url: str, clients: int, duration: float, script: Path | None = None) -> Wrk:
    threads = min(2, clients)  # wrk needs a connection per thread at least
    command = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration:g}s", "--latency"]
    command += ["--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return Wrk(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=errors.group(1) if errors else "none",
        p50_ms=_ms(percentiles["50"]) if "50" in percentiles else None,
        p99_ms=_ms(percentiles["99"]) if "99" in percentiles else None,
    )


def raw_loop(topology: Topology, messages: list, duration: float) -> float:
    connection = pika.BlockingConnection(connection_parameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < duration:
        message = messages[sent % len(messages)]
        channel.basic_publish(
            topology.inbound,
            message.routing_key,
            message.body,
            message.properties,
            mandatory=True,
        )
        sent += 1
    elapsed = time.monotonic() - started
    connection.close()
    return sent / elapsed


def purge(topology: Topology) -> None:
    connection = pika.BlockingConnection(connection_parameters(AMQP_URL))
    connection.channel().queue_purge(topology.work_queue)
    connection.close()


def delete(topology: Topology) -> None:
    connection = pika.BlockingConnection(connection_parameters(AMQP_URL))
    channel = connection.channel()
    for queue in (
        topology.work_queue,
        topology.dead_letter,
        topology.dead_letter_journal,
        *map(topology.retry_queue, DELAYS),
    ):
        channel.queue_delete(queue)
    for exchange in (topology.inbound, topology.events, topology.dead_letter_exchange):
        channel.exchange_delete(exchange)
    connection.close()


def start_ingress(namespace: str, secret: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "AMQP_URL": AMQP_URL,
        "PROVISIONER_NAMESPACE": namespace,
        "PROVISIONER_RETRY_DELAYS": ",".join(map(str, DELAYS)),
        "PROVISIONER_INGRESS_BIND": f"127.0.0.1:{port}",
        "PROVISIONER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HUBSPOT_CLIENT_SECRET": secret,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.commands", "ingress"], env=env, stderr=log.open("wb")
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if request(port, "GET", "/readyz")[0] == 200:
                return process
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"the ingress did not get ready; see {log}")
        time.sleep(0.05)


def one_round(args: argparse.Namespace, workdir: Path) -> dict:
    namespace = f"bench-ingress-{uuid.uuid4().hex[:8]}"
    topology = Topology(namespace, DELAYS)
    secret = uuid.uuid4().hex
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    declare_all(AMQP_URL, topology)
    process = None
    try:
        requests = signed_requests(args.distinct, secret, origin)
        messages = [m for body, _ in requests for m in hubspot.translate(body)[0]]
        loop = raw_loop(topology, messages, args.duration)
        purge(topology)

        log = workdir / f"{namespace}.log"
        process = start_ingress(namespace, secret, port, log)
        ceiling = wrk(origin + "/healthz", args.clients, args.duration)
        script = workdir / "full.lua"
        # Signed just now: valid for five minutes, longer than the runs that use them.
        script.write_text(lua_script(signed_requests(args.distinct, secret, origin), None))
        offset = log.stat().st_size
        full = wrk(origin + PATH, args.clients, args.duration, script)
        full.server = server_side(log, offset)
        purge(topology)
        half_rate = full.rps / 2
        delay_ms = args.clients * 1000 / half_rate
        script.write_text(lua_script(signed_requests(args.distinct, secret, origin), delay_ms))
        half = wrk(origin + PATH, args.clients, args.duration, script)
        # wrk paces each connection by a delay after each answer, so the rate it reaches is
        # clients / (delay + latency): correct the delay once by the latency it met.
        latency_ms = args.clients * 1000 / half.rps - delay_ms
        delay_ms = max(1.0, args.clients * 1000 / half_rate - latency_ms)
        script.write_text(lua_script(signed_requests(args.distinct, secret, origin), delay_ms))
        purge(topology)
        offset = log.stat().st_size
        half = wrk(origin + PATH, args.clients, args.duration, script)
        half.server = server_side(log, offset)
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        delete(topology)
    return {"loop": loop, "ceiling": ceiling, "full": full, "half": half, "half_rate": half_rate}


def report(rounds: list[dict], args: argparse.Namespace) -> None:
    print(f"\n{platform.node()} · {os.cpu_count()} cpus · {args.clients} clients · "
          f"{args.duration:g} s a phase · {len(rounds)} rounds\n")  # fmt: skip
    print(
        "| round | (a) loop msg/s | (b) ceiling req/s | (c) ingress req/s | (c)/(a) "
        "| (c) p50 / p99 ms | non-2xx | (d) target / got req/s | (d) p50 / p99 ms "
        "| (d) p99 in the server: all / confirm wait / own ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, r in enumerate(rounds, 1):
        full, half, inside = r["full"], r["half"], r["half"].server
        print(
            f"| {n} | {r['loop']:.0f} | {r['ceiling'].rps:.0f} | {full.rps:.0f} "
            f"| {full.rps / r['loop']:.2f}x | {full.p50_ms:.1f} / {full.p99_ms:.1f} "
            f"| {full.non_2xx + half.non_2xx} | {r['half_rate']:.0f} / {half.rps:.0f} "
            f"| {half.p50_ms:.1f} / {half.p99_ms:.1f} | {inside['total']:.1f} "
            f"/ {inside['confirm']:.1f} / {inside['own']:.1f} |"
        )
    ratio = statistics.median(r["full"].rps / r["loop"] for r in rounds)
    p99 = statistics.median(r["half"].p99_ms for r in rounds)
    above = all(r["ceiling"].rps > max(r["full"].rps, r["loop"]) for r in rounds)
    print(f"\nmedian (c)/(a) = {ratio:.2f}x (goal >= 1.0x): {'met' if ratio >= 1 else 'NOT met'}")
    print(f"median (d) p99 = {p99:.1f} ms (goal < 50 ms): {'met' if p99 < 50 else 'NOT met'}")
    print(f"(b) above (a) and (c) in every round: {'yes' if above else 'NO'}")
    errors = {r["full"].errors for r in rounds} | {r["half"].errors for r in rounds}
    print(f"socket errors: {', '.join(sorted(errors))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingress", description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds a phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--distinct", type=int, default=2000, help="different signed requests")
    parser.add_argument("--quick", action="store_true", help="one round of 3 s phases")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.distinct = 1, 3.0, 300
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install -y wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        rounds = []
        for n in range(args.rounds):
            print(f"round {n + 1}/{args.rounds} …", file=sys.stderr, flush=True)
            rounds.append(one_round(args, Path(tmp)))
    report(rounds, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
