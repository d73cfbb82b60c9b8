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
import shutil
import sys
from pathlib import Path


def idle_runtime_env() -> dict:
    """The Ray runtime env of a training job beside serving. Ray sets a worker's nice value from
    `RAY_worker_niceness` only once the worker's Python has booted, and a Ray Train job boots about
    eight such processes, which took serving's CPU at nice 0 for the job's first minute or so.
    `py_executable` runs each worker's interpreter under `chrt --idle 0`, so it is in the idle
    class from exec on (the nodes must share the driver's interpreter path, as one image does);
    without chrt, the nice value is what is left."""
    runtime_env: dict = {"env_vars": {"RAY_worker_niceness": "19"}}
    chrt = shutil.which("chrt")
    if chrt and hasattr(os, "SCHED_IDLE"):
        runtime_env["py_executable"] = f"{chrt} --idle 0 {sys.executable}"
    return runtime_env


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
