"""Keeping the worker process on one CPU (``PROVISIONER_CPU``).

The worker's Python code runs one thread at a time anyway (the GIL). What more CPUs buy it
is handoffs: each time a lane gives the GIL up for a moment (an SQLite call, a socket
write), the I/O thread, woken on another CPU, takes it, and the lane must wait to get it
back. Each such handoff is a cross-CPU wake-up, which costs far more than the work between
two of them on a virtual machine. On one CPU the thread that lets go takes the GIL straight
back and the others run when it really blocks. Measured with ``bench/throughput.py`` (b):
about 20 context switches per event unpinned, 2 to 3 pinned, and twice the events per
second (README, Benchmarks). Vendor calls, which wait on the network, lose nothing.

``auto`` (the default) picks one of the CPUs the process may use, by process id, so that
several workers on one host spread out; ``all`` leaves the process unpinned; a number pins
it to that CPU.
"""

from __future__ import annotations

import os


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
