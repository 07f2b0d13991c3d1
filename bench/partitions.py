"""What partitions cost one worker: ``deal.closed_won`` events/s with PROVISIONER_PARTITIONS
1 (the worker consumes NS.worker) against P (the same worker also routes every message
into a partition and consumes P partition queues), both on PostgreSQL.

``python -m bench.partitions [--events N] [--partitions P] [--rounds R]``

Each round publishes N events into a fresh namespace before the worker starts, as
``bench.throughput`` (b) does, and times the steady state from the first outcome to the
last; the rounds alternate the two settings, because this machine's speed swings by a
third from minute to minute. PostgreSQL at ``TEST_POSTGRES_URL`` (default the local test
database), in a schema of its own per round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pika

from bench.throughput import (
    Collector,
    closed_won_events,
    namespace,
    publish,
    running_worker,
    steady,
    worker_env,
)
from tests.postgres import fresh_schema
from worker.topology import connection_parameters

POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def one_round(url: str, n: int, partitions: int, concurrency: int) -> float:
    with (
        namespace(url) as topology,
        tempfile.TemporaryDirectory() as tmp,
        fresh_schema(POSTGRES, "bench") as db,
    ):
        publish(url, topology, closed_won_events(n))
        collector = Collector(url, topology)
        env = worker_env(url, topology, Path(tmp), concurrency)
        env.update(PROVISIONER_DATABASE_URL=db, PROVISIONER_PARTITIONS=str(partitions))
        started = time.monotonic()
        try:
            with running_worker(env, Path(tmp)) as worker:
                arrivals = collector.wait(n, type="project.activated", alive=worker.alive)
        finally:
            collector.close()
            drop_partitions(url, topology.namespace, partitions)
        return steady(arrivals, started).per_second


def drop_partitions(url: str, namespace_: str, partitions: int) -> None:
    connection = pika.BlockingConnection(connection_parameters(url))
    channel = connection.channel()
    for p in range(partitions if partitions > 1 else 0):
        channel.queue_delete(f"{namespace_}.partition.{p}")
    channel.exchange_delete(f"{namespace_}.partitions")
    connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.partitions", description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    rates: dict[int, list[float]] = {1: [], args.partitions: []}
    for round_ in range(1, args.rounds + 1):
        for p in rates:
            rate = one_round(url, args.events, p, args.concurrency)
            rates[p].append(rate)
            print(f"round {round_}  partitions {p:>3}  {args.events} events  {rate:8.1f} events/s")
    one, many = (statistics.median(r) for r in rates.values())
    print(f"median: partitions 1 {one:.1f} events/s, partitions {args.partitions} {many:.1f}")
    print(f"one worker with partitions runs at {many / one:.2f}x of partitions 1")


if __name__ == "__main__":
    main()
