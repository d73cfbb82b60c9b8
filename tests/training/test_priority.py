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


# a job driver beside serving, as `dynrec train` with train.priority idle connects
IDLE_JOB = """
import os, ray
from training.priority import idle_runtime_env
from training.ray_cluster import connect_ray

@ray.remote(num_cpus=0)
def policies():
    tasks = os.listdir("/proc/self/task")
    return len(tasks), sum(os.sched_getscheduler(int(t)) == os.SCHED_IDLE for t in tasks)

connect_ray(idle_runtime_env())
print(*ray.get(policies.remote()))
ray.shutdown()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the idle scheduling class is Linux's")
def test_an_idle_jobs_ray_workers_boot_in_the_idle_class(ray_local):
    """Ray would only renice its workers once booted, and never into the idle class: every thread
    of the worker is idle because its interpreter started there."""
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", IDLE_JOB], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    threads, idle = map(int, done.stdout.strip().splitlines()[-1].split())
    assert threads >= 2  # the task's thread and Ray's own
    assert idle == threads
