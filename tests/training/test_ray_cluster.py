"""Batch jobs join the cluster a RayJob names instead of asking for CPUs Ray would refuse."""

import os
import subprocess
import sys

import ray

JOIN = (
    "import ray; from training.ray_cluster import connect_ray; connect_ray(); "
    "print(int(ray.cluster_resources()['CPU'])); ray.shutdown()"
)


def test_joins_the_cluster_named_by_ray_address():
    started = not ray.is_initialized()  # an earlier test's local cluster serves as well
    if started:
        ray.init(num_cpus=1, include_dashboard=False)
    try:
        cpus = int(ray.cluster_resources()["CPU"])
        env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled"}
        # a job driver: with num_cpus, ray.init would raise when joining an existing cluster
        joined = subprocess.run([sys.executable, "-c", JOIN], env=env, capture_output=True, text=True, timeout=120)
        assert joined.returncode == 0, joined.stderr[-2000:]
        assert joined.stdout.strip().splitlines()[-1] == str(cpus)  # the running cluster's CPUs
    finally:
        if started:
            ray.shutdown()
