"""Autoscaling, exercised: a load step (low, high, low) makes Ranker and Ingress replicas scale up
and back down, and no request fails across the scale events.

    DYNREC_HOME=<a served home> .venv/bin/python -m bench.autoscale [--rates 4,60,4] [--seconds 40,90,120]

Runs `serve run` on serve_config.yaml with the Ranker's and Ingress's autoscaling made eager
enough to act within the run (targets below one ongoing request, a few seconds' delays; the
deployed defaults target throughput on bigger nodes). The home must hold a store and prepared
artefacts (the quickstart's, or any home a service has started on). An open loop of
recommendation requests for the store's users runs at each rate in turn, through dynrec.client
without retries; a thread reads every deployment's running replicas from Serve once a second.

Writes bench/results/autoscale.json: {"errors", "max_replicas": {deployment: n},
"min_replicas_after": {deployment: n}, "timeline": [...]}, and bench/results/autoscale.png, the
replicas, requests/s and p50/p99 over time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
import yaml

from bench.common import RESULTS_DIR, ROOT, cluster_address, machine, start_serve, stop_serve, write_results
from dynrec.client import ApiError, AsyncClient, Retries, wait_until_ok

BASE = "http://127.0.0.1:8000"
SCALED = ("Ranker", "Ingress")
EAGER = {
    "Ranker": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 0.5, "upscale_delay_s": 3,
               "downscale_delay_s": 15},
    "Ingress": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2, "upscale_delay_s": 3,
                "downscale_delay_s": 15},
}


def serve_config(folder: Path) -> Path:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    for app in config["applications"]:
        app["logging_config"] = {"enable_access_log": False}
        for deployment in app["deployments"]:
            if deployment["name"] in EAGER:
                deployment["autoscaling_config"] = EAGER[deployment["name"]]
    path = folder / "serve_autoscale.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class ReplicaSampler(threading.Thread):
    """Running replicas per deployment, once a second, read from Serve as a driver on the cluster."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address = address
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import ray
        from ray import serve

        ray.init(address=self.address, namespace="serve", log_to_driver=False)
        while not self.stop.is_set():
            status = serve.status().applications["dynrec"].deployments
            self.samples.append((time.monotonic(), {name: d.replica_states.get("RUNNING", 0) for name, d in status.items()}))
            self.stop.wait(1.0)


async def step_load(rates: list[float], seconds: list[float], users: list[str]) -> list[tuple[float, float, bool]]:
    """(sent, latency s, ok) per request, the rates one after another, open loop."""
    results: list[tuple[float, float, bool]] = []

    async def one(client: AsyncClient, user: str):
        sent = time.monotonic()
        try:
            await client.recommendations(user, 10)
            results.append((sent, time.monotonic() - sent, True))
        except ApiError:
            results.append((sent, time.monotonic() - sent, False))

    async with AsyncClient(BASE, retries=Retries(attempts=1), timeout_s=60) as client:
        tasks, n = [], 0
        for rate, length in zip(rates, seconds):
            start = time.monotonic()
            for i in range(int(rate * length)):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(client, users[n % len(users)])))
                n += 1
        await asyncio.gather(*tasks)
    return results


def timeline(results, samples, start: float, end: float) -> list[dict]:
    """Per second: requests sent and answered, p50/p99 of those sent in the 5 s before, replicas."""
    sent = np.array([r[0] for r in results]) - start
    latency = np.array([r[1] for r in results]) * 1000
    ok = np.array([r[2] for r in results])
    rows = []
    for second in range(int(end - start)):
        window = (sent >= second - 4) & (sent < second + 1) & ok
        now = (sent >= second) & (sent < second + 1)
        replicas = next((s for t, s in reversed(samples) if t - start <= second + 1), {})
        rows.append({"t": second, "sent": int(now.sum()), "errors": int((now & ~ok).sum()),
                     "p50_ms": float(np.percentile(latency[window], 50)) if window.any() else None,
                     "p99_ms": float(np.percentile(latency[window], 99)) if window.any() else None,
                     "replicas": {name: replicas.get(name) for name in SCALED}})
    return rows


def plot(rows: list[dict], boundaries: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    for name in SCALED:
        axes[0].step(t, [r["replicas"][name] or 0 for r in rows], where="post", label=name)
    axes[0].set_ylabel("running replicas")
    axes[0].legend(loc="upper right")
    axes[1].plot(t, [r["sent"] for r in rows], label="sent")
    axes[1].plot(t, [r["errors"] for r in rows], label="errors", color="tab:red")
    axes[1].set_ylabel("requests / s")
    axes[1].legend(loc="upper right")
    axes[2].plot(t, [r["p50_ms"] for r in rows], label="p50")
    axes[2].plot(t, [r["p99_ms"] for r in rows], label="p99")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("latency, ms (5 s window)")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="upper right")
    for ax in axes:
        for boundary in boundaries:
            ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    fig.suptitle("dynrec autoscaling: POST /v1/recommendations, load step low - high - low")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="4,60,4", help="requests/s of each phase")
    parser.add_argument("--seconds", default="40,90,120", help="length of each phase")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    seconds = [float(s) for s in args.seconds.split(",")]
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with tempfile.TemporaryDirectory() as folder:
        server = start_serve(serve_config(Path(folder)), Path(folder) / "serve.log")
        sampler = None
        try:
            wait_until_ok(lambda: requests.get(f"{BASE}/healthz", timeout=5), 900, every_s=2)
            sampler = ReplicaSampler(cluster_address(server))
            users = [str(u) for u in range(1, 3001)]
            sampler.start()
            time.sleep(3)
            start = time.monotonic()
            results = asyncio.run(step_load(rates, seconds, users))
            end = time.monotonic()
        finally:
            if sampler is not None:
                sampler.stop.set()
            stop_serve(server)
    rows = timeline(results, sampler.samples, start, end)
    boundaries = list(np.cumsum(seconds)[:-1])
    last_phase = [r for r in rows if r["t"] >= sum(seconds) - 10]
    during = [s for t, s in sampler.samples if start <= t <= end]
    summary = {
        "errors": sum(not ok for _, _, ok in results),
        "requests": len(results),
        "max_replicas": {name: max((s.get(name, 0) for s in during), default=0) for name in SCALED},
        "min_replicas_after": {name: min((r["replicas"][name] for r in last_phase if r["replicas"][name]), default=None)
                               for name in SCALED},
        "settings": {"rates": rates, "seconds": seconds, "autoscaling": EAGER},
        "machine": machine(),
        "timeline": rows,
    }
    path = write_results("autoscale", summary)
    png = plot(rows, boundaries, RESULTS_DIR / "autoscale.png")
    print(f"\n{'deployment':<12}{'max replicas':>14}{'replicas at the end':>21}")
    for name in SCALED:
        print(f"{name:<12}{summary['max_replicas'][name]:>14}{str(summary['min_replicas_after'][name]):>21}")
    print(f"errors {summary['errors']} of {summary['requests']} requests\nwrote {path} and {png}")


if __name__ == "__main__":
    main()
