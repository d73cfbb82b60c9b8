"""Training beside a live service yields the CPU: every thread of it, not only the calling one."""

import os
import subprocess
import sys

import pytest

# numpy starts OpenBLAS's thread pool on import, before run_idle; another thread starts after it
POLICIES = """
import os, threading
import numpy
from training.priority import run_idle

before = threading.Event()
threading.Thread(target=before.wait, daemon=True).start()
run_idle()
after = threading.Event()
threading.Thread(target=after.wait, daemon=True).start()
tasks = os.listdir("/proc/self/task")
print(len(tasks), sum(os.sched_getscheduler(int(t)) == os.SCHED_IDLE for t in tasks))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the idle scheduling class is Linux's")
def test_run_idle_moves_threads_started_before_and_after_it():
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", POLICIES], env=env, capture_output=True, text=True, timeout=60, check=True)
    threads, idle = map(int, done.stdout.split())
    assert threads >= 4  # main, OpenBLAS's pool, the thread before and the thread after
    assert idle == threads
