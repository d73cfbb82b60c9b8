"""Two Ray nodes on this machine, sharing nothing but Redis and the artifact URI: the worker
node's raylet is killed under load, and nothing acknowledged may be lost.

    .venv/bin/python -m bench.multinode [--rate 8] [--seconds 60]

A head and a worker node start through Ray's own multi-node helper (`ray.cluster_utils.Cluster`),
each with its own DYNREC_HOME (empty: every replica fetches the model, embeddings and ONNX exports
from `artifacts.uri` and boots from the store's snapshots) and a custom resource naming it. The
app is deployed with `serve deploy` (through the head's dashboard) from serve_config.yaml, changed
so that it fits two 1-CPU nodes and spreads: two Ranker replicas at most one per node
(`max_replicas_per_node`), everything else where Ray places it; the placement is read back and
reported. One HTTP proxy, on the head (see `serve_config`). Under an open loop of event posts (each from a user of its own) and recommendation
requests, the worker's raylet is killed by the id of the process this bench started. Afterwards
every acknowledged event is looked up through `GET /v1/users/{id}`.

The artefacts are prepared first: ML-100k imported into a fresh Redis (append-only, fsync on
every write), a small bootstrap model trained, and the run, embeddings and exports published to a
local artifact URI.

Writes bench/results/multinode.json: {"acked_events", "acked_events_lost", "failed_requests",
"recovery_s", "placement": {deployment: [node, ...]}}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from bench.common import ROOT, machine, write_results
from dynrec.client import ApiError, AsyncClient, Client, Retries, wait_until_ok

HTTP_PORT = 8000
BASE = f"http://127.0.0.1:{HTTP_PORT}"
STALL_S = 1.0  # a request answered later than this after the kill counts as held up by it


def prepare(folder: Path, redis_url: str, data_dir: Path) -> Path:
    """The dynrec config the nodes share (Redis, the artifact URI, no datasets folder), with the
    store filled and the artefacts published."""
    from dynrec.artifacts.prepare import ensure_artifacts, onnx_folder
    from dynrec.artifacts.publish import publish
    from dynrec.config import DynrecConfig
    from dynrec.state.imports import import_source

    (folder / "no-datasets").mkdir()
    settings = {
        "source": {"dataset": "ml-100k"},
        "state": {"backend": "redis", "redis_url": redis_url},
        "artifacts": {"uri": str(folder / "artifact-uri")},
        "serving": {"bootstrap_epochs": 3},
        "model": {"dim": 32, "max_length": 50},
    }
    path = folder / "dynrec.yaml"
    path.write_text(yaml.safe_dump({**settings, "home": str(folder / "prepare-home"), "data": {"data_dir": str(data_dir)}}))
    config = DynrecConfig.load(path)
    import_source(config, progress=True)
    artifacts = ensure_artifacts(config, progress=True)
    for folder_ in (config.paths.run(artifacts.run_name), config.paths.embeddings(artifacts.run_name).parent):
        publish(config.home, os.path.relpath(folder_, config.home), config.artifacts.uri)
    publish(config.home, onnx_folder(config), config.artifacts.uri)
    path.write_text(yaml.safe_dump({**settings, "data": {"data_dir": str(folder / "no-datasets")}}))
    return path


def serve_config(folder: Path) -> Path:
    """serve_config.yaml, sized for two 1-CPU nodes, with the Rankers spread one per node."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": HTTP_PORT}
    # one proxy: two nodes on one machine would both listen on the same port, the kernel would
    # split connections between them, and the dead node's proxy would take its share down with it
    # (on a cluster, the load balancer in front of the nodes drops a dead one)
    config["proxy_location"] = "HeadOnly"
    for app in config["applications"]:
        app["logging_config"] = {"enable_access_log": False}
        app["import_path"], app["args"] = "deployments.app:build_app", {"ranker_replicas": 2}  # the builder takes args
        for deployment in app["deployments"]:
            deployment["ray_actor_options"] = {"num_cpus": 0.1}
            if deployment["name"] == "Ranker":
                deployment.pop("autoscaling_config", None)
                deployment["max_replicas_per_node"] = 1
    path = folder / "serve_multinode.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def placement(names: dict[str, str]) -> dict[str, list[str]]:
    """Each deployment's live replicas, by the name of the node they run on."""
    from ray.util.state import list_actors

    placed: dict[str, list[str]] = {}
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
        name = actor.name or ""
        if name.startswith("SERVE_REPLICA::dynrec#"):
            deployment = name.split("#")[1]
            placed.setdefault(deployment, []).append(names.get(actor.node_id, actor.node_id[:8]))
    return {k: sorted(v) for k, v in sorted(placed.items())}


async def load(rate: float, seconds: float, kill_at: float, kill) -> dict:
    """Open-loop load through dynrec.client (no retries, so every failure counts); `kill` runs at
    `kill_at` seconds."""
    acked, failures, latencies = [], [], []
    items = [str(i) for i in (1, 50, 100, 121, 181, 258, 286, 294, 300, 313)]
    killed_at = {}

    async def one(client: AsyncClient, n: int):
        sent = time.monotonic()
        try:
            if n % 2:
                user, item = f"multinode-{n}", items[n % len(items)]
                answer = await client.events([{"user_id": user, "item_id": item, "event_type": "rating", "value": 4}])
                if answer.accepted == 1:
                    acked.append((user, item))
            else:
                await client.recommendations(str(1 + n % 943), 10)
            latencies.append((sent, time.monotonic() - sent))
        except ApiError as error:
            failures.append((sent, f"{error}"[:120]))

    async def fire():
        await asyncio.sleep(kill_at)
        killed_at["t"] = time.monotonic()
        await asyncio.to_thread(kill)

    async with AsyncClient(BASE, retries=Retries(attempts=1), timeout_s=60) as client:
        start = time.monotonic()
        killer = asyncio.create_task(fire())
        tasks = []
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, n)))
        await asyncio.gather(*tasks, killer)
    return {"acked": acked, "failures": failures, "latencies": latencies, "killed_at": killed_at["t"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from ray.cluster_utils import Cluster

    from dynrec.config import DynrecConfig
    from tests.conftest import RedisServer, free_port

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        redis = RedisServer(folder)
        redis.start()
        cluster = None
        try:
            config_path = prepare(folder, redis.url, DynrecConfig().data.data_dir)
            dashboard_port = free_port()
            common = {"DYNREC_CONFIG": str(config_path), "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 1, "resources": {"node_head": 1}, "include_dashboard": True, "dashboard_port": dashboard_port,
                "env_vars": {**common, "DYNREC_HOME": str(folder / "home-head")}})
            worker = cluster.add_node(num_cpus=1, resources={"node_worker": 1},
                                      env_vars={**common, "DYNREC_HOME": str(folder / "home-worker")})
            names = {cluster.head_node.node_id: "head", worker.node_id: "worker"}
            env = {**os.environ, **common, "RAY_ADDRESS": cluster.address}
            subprocess.run([str(Path(sys.executable).parent / "serve"), "deploy", str(serve_config(folder)),
                            "--address", f"http://127.0.0.1:{dashboard_port}"], env=env, check=True, cwd=ROOT)
            wait_until_ok(lambda: requests.get(f"{BASE}/healthz", timeout=5), 900, every_s=2)
            import ray

            ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
            before = placement(names)
            print(f"placement: {before}", flush=True)
            raylet = worker.all_processes["raylet"][0].process.pid

            def kill():
                os.kill(raylet, signal.SIGKILL)

            outcome = asyncio.run(load(args.rate, args.seconds, args.seconds / 3, kill))
            wait_until_ok(lambda: requests.get(f"{BASE}/healthz", timeout=5), 300, every_s=2)
            wait_until_ok(lambda: requests.get(f"{BASE}/v1/users/{outcome['acked'][0][0]}", timeout=5), 300, every_s=2)
            with Client(BASE, timeout_s=60) as client:
                lost = [user for user, item in outcome["acked"]
                        if item not in [r["item_id"] for r in client.get_user(user).get("recent", [])]]
            after = placement(names)
        finally:
            if cluster is not None:
                import ray

                ray.shutdown()
                cluster.shutdown()
            redis.stop()
    at = outcome["killed_at"]
    stalled = [t + d for t, d in outcome["latencies"] if t >= at - STALL_S and d > STALL_S]
    ends = stalled + [t for t, _ in outcome["failures"] if t >= at]
    results = {
        "acked_events": len(outcome["acked"]),
        "acked_events_lost": len(lost),
        "failed_requests": len(outcome["failures"]),
        "failure_kinds": sorted({kind for _, kind in outcome["failures"]}),
        "held_up_requests": len(stalled),
        "recovery_s": (max(ends) - at) if ends else 0.0,
        "placement": before,
        "placement_after": after,
        "settings": vars(args),
        "machine": machine(),
    }
    path = write_results("multinode", results)
    print(f"\nacked events {results['acked_events']}, lost {results['acked_events_lost']}; failed requests "
          f"{results['failed_requests']}, held up {results['held_up_requests']}; recovery {results['recovery_s']:.1f} s"
          f"\nplacement before {before}\nplacement after {after}\nwrote {path}")


if __name__ == "__main__":
    main()
