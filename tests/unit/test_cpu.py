"""``PROVISIONER_CPU``: which CPU the worker keeps to. Each test pins a thread of its own
(on Linux an affinity belongs to the thread that sets it), never the test process."""

from __future__ import annotations

import os
import threading

import pytest

from worker import cpu
from worker.cpu import CpuError, pin


def in_a_thread(setting: str) -> tuple[int | None, set[int] | Exception]:
    result: list = []

    def work():
        try:
            result.append((pin(setting), os.sched_getaffinity(0)))
        except CpuError as exc:
            result.append((None, exc))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return result[0]


def test_auto_keeps_the_worker_to_one_of_the_cpus_it_may_use(monkeypatch):
    monkeypatch.setattr(cpu, "pids_are_the_hosts", lambda: True)  # wherever the suite runs
    pinned, affinity = in_a_thread("auto")

    assert affinity == {pinned}
    assert pinned in os.sched_getaffinity(0)


def test_auto_in_a_container_leaves_replicas_unpinned(monkeypatch):
    # Every replica is process 1 in its own PID namespace: by pid, all would share one CPU.
    monkeypatch.setattr(cpu, "pids_are_the_hosts", lambda: False)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3})

    assert in_a_thread("auto") == (None, {0, 1, 2, 3})


def test_auto_on_the_host_spreads_workers_by_their_process_ids(monkeypatch):
    chosen = []
    monkeypatch.setattr(cpu, "pids_are_the_hosts", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr(os, "sched_setaffinity", lambda _, cpus: chosen.append(cpus))
    for pid in (4001, 4002, 4003):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        pin("auto")

    assert chosen == [{1}, {2}, {3}]


def test_auto_in_a_container_keeps_to_the_one_cpu_of_its_cpuset(monkeypatch):
    monkeypatch.setattr(cpu, "pids_are_the_hosts", lambda: False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {3})

    assert pin("auto") == 3


def test_a_cpu_named_by_number_is_the_one_kept_to():
    cpu = max(os.sched_getaffinity(0))

    assert in_a_thread(str(cpu)) == (cpu, {cpu})


def test_all_leaves_the_worker_free_to_run_anywhere():
    assert in_a_thread("all") == (None, os.sched_getaffinity(0))


def test_a_cpu_the_process_may_not_use_is_a_clear_error():
    _, error = in_a_thread("4096")

    assert isinstance(error, CpuError)
    assert "PROVISIONER_CPU" in str(error) and "4096" in str(error)


@pytest.mark.parametrize("value", ["auto", "all", "0"])
def test_the_setting_accepts_auto_all_or_a_number(value, monkeypatch):
    from worker.settings import load_settings

    monkeypatch.setenv("PROVISIONER_CPU", value)
    assert load_settings().cpu == value
