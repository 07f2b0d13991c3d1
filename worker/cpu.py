"""Keeping the worker process on one CPU (``PROVISIONER_CPU``).

The worker's Python code runs one thread at a time anyway (the GIL). What more CPUs buy it
is handoffs: each time a lane gives the GIL up for a moment (an SQLite call, a socket
write), the I/O thread, woken on another CPU, takes it, and the lane must wait to get it
back. Each such handoff is a cross-CPU wake-up, which costs far more than the work between
two of them on a virtual machine. On one CPU the thread that lets go takes the GIL straight
back and the others run when it really blocks. Measured with ``bench/throughput.py`` (b):
about 20 context switches per event unpinned, 2 to 3 pinned, and twice the events per
second (README, Benchmarks). Vendor calls, which wait on the network, lose nothing.

``auto`` (the default) picks one of the CPUs the process may use by process id, so that
several workers on one host spread out, but only where process ids are the host's own. In a
container every replica is process 1 (or the same small number under an init), so a choice
by pid would put every replica of a host on the same CPU, each at a fraction of one. There
(any PID namespace but the host's) ``auto`` leaves the process unpinned: pin replicas with a
number each, or give each container a cpuset (one allowed CPU is kept to, whatever the
pid). ``all`` leaves the process unpinned; a number pins it to that CPU.
"""

from __future__ import annotations

import os

# The inode of the initial PID namespace, fixed by the kernel (PROC_PID_INIT_INO): a process
# whose /proc/self/ns/pid has it sees the host's process ids.
HOST_PID_NAMESPACE = "pid:[4026531836]"


class CpuError(ValueError):
    """``PROVISIONER_CPU`` names no CPU this process may use."""


def pin(setting: str) -> int | None:
    """Applies ``setting`` to this process (threads started later inherit it); returns the
    CPU pinned to, or None when unpinned."""
    if setting == "all" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if setting == "auto":
        if len(allowed) == 1:
            return allowed[0]
        if not pids_are_the_hosts():
            return None  # replicas share their pids: see the module's docstring
        cpu = allowed[os.getpid() % len(allowed)]
    else:
        cpu = int(setting)
        if cpu not in allowed:
            raise CpuError(
                f"PROVISIONER_CPU: CPU {cpu} is not one this process may use "
                f"({', '.join(map(str, allowed))})"
            )
    os.sched_setaffinity(0, {cpu})
    return cpu


def pids_are_the_hosts() -> bool:
    """True in the host's PID namespace, False in a container's (or where it cannot tell)."""
    try:
        return os.readlink("/proc/self/ns/pid") == HOST_PID_NAMESPACE
    except OSError:
        return False
