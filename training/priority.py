"""CPU priority for training beside a live service.

Ray starts its worker processes, Serve replicas included, at nice 15, so a training worker that
only adds to its own nice value (`os.nice(10)` gives 19) still weighs 15 against serving's 36 in
the kernel's scheduler. And `os.nice` changes only the calling thread on Linux: threads started
earlier, such as OpenBLAS's pool, which numpy starts on import, keep the old value. The idle
scheduling class (SCHED_IDLE) takes only CPU that no other thread wants, and an unprivileged
process may always enter it.
"""

from __future__ import annotations

import os
from pathlib import Path


# Ray reads this in each worker process it starts and sets the process's nice value from it (its
# default is 15): a training job's workers take the lowest priority before they import anything
IDLE_WORKER_ENV = {"RAY_worker_niceness": "19"}


def run_idle() -> None:
    """Move every thread of this process, and so every thread it starts later, into the idle
    scheduling class; where there is none (not Linux), the lowest nice value."""
    if not hasattr(os, "SCHED_IDLE"):
        os.nice(19)
        return
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setscheduler(int(task.name), os.SCHED_IDLE, os.sched_param(0))
        except ProcessLookupError:  # the thread ended meanwhile
            continue


def start_idle() -> None:
    """`preexec_fn` for a training subprocess: it starts in the idle class, its imports included
    (a child has one thread until it runs Python)."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)
