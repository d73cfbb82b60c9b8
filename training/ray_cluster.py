"""Joining Ray for the batch jobs: the cluster a RayJob (or `ray start`) provides, else a local one."""

from __future__ import annotations

import os

import ray


def connect_ray(runtime_env: dict | None = None) -> None:
    """Connect once. Inside a RayJob `RAY_ADDRESS` names the cluster, whose resources are its own
    (Ray refuses `num_cpus` when joining); a laptop run starts a local cluster over every CPU.
    `runtime_env` applies to every worker process this job starts."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env=runtime_env)
    else:
        ray.init(num_cpus=os.cpu_count(), runtime_env=runtime_env)
