"""A new model while serving: train beside the live service, publish, and switch under load.

    DYNREC_HOME=<a home that has served ML-1M> .venv/bin/python -m bench.swap [--rate 20] [--train-minutes 4]

Starts `serve run serve_config.yaml` on the home, sends an open-loop mix at `--rate` (80%
recommendations for ML-1M users, 20% single events) for the whole run, and:
1. measures a baseline stretch (`--baseline-s`);
2. runs `dynrec train` (Ray Train) against the live cluster, in the idle scheduling class
   (`train.priority: idle`), with a budget of `--train-minutes`; the run publishes itself to the
   store when it is done (forced here: the bench measures the switch, whatever the new model's
   score);
3. keeps the load on until every response has come from the new model for `--after-s`.

Writes bench/results/swap.json: `swap_s` (from the publication until the last request answered by
the old model was sent), `errors` (from the publication on; `errors_by_stretch` and `failures`
say where every error fell), `mixed_version_responses` (responses whose user vector came
from another model than their item vectors), `p99_during_swap_ms`, the baseline's and the
training stretch's p50/p99 beside them, and a PNG timeline (swap.png).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
import yaml

from bench.common import (
    RESULTS_DIR,
    ROOT,
    cluster_address,
    machine,
    start_serve,
    stop_serve,
    write_results,
)
from dynrec.artifacts.versions import published_model
from dynrec.client import ApiError, AsyncClient, Retries, wait_until_ok
from dynrec.config import DynrecConfig
from dynrec.state import open_store
from training.priority import start_idle

BASE = "http://127.0.0.1:8000"


class Traffic:
    """Open-loop load in a thread of its own: (sent, latency_s, ok, model_version, user_model_version)."""

    def __init__(self, rate: float):
        self.rate, self.rows, self.stop, self.failures = rate, [], threading.Event(), []
        self.items = [str(i) for i in (1, 2, 10, 34, 39, 50, 110, 260, 296, 318, 356, 480, 527, 589, 593)]  # ML-1M ids
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with AsyncClient(BASE, timeout_s=60, retries=Retries(attempts=1)) as client:  # a failure counts
            tasks, n, start = set(), 0, time.monotonic()
            while not self.stop.is_set():
                delay = start + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(client, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.gather(*tasks)

    async def _one(self, client: AsyncClient, n: int) -> None:
        sent = time.monotonic()
        user = str(1 + (n * 7919) % 6040)
        versions = (None, None)
        try:
            if n % 5 == 4:
                await client.events([{"user_id": user, "item_id": self.items[n % len(self.items)], "event_type": "view"}])
            else:
                answer = await client.recommendations(user, 10)
                versions = (answer.model_version, answer.user_model_version)
            ok = True
        except ApiError as error:
            ok = False
            self.failures.append((sent, "events" if n % 5 == 4 else "recommendations", error.status, str(error)[:200]))
        self.rows.append((sent, time.monotonic() - sent, ok, *versions))


def percentiles(rows, lo: float, hi: float) -> dict:
    latencies = [r[1] for r in rows if lo <= r[0] < hi and r[2]]
    if not latencies:
        return {"requests": 0}
    return {"requests": len(latencies), "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1)}


def plot(rows, marks: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = rows[0][0]
    versions = sorted({r[3] for r in rows if r[3]}, key=lambda v: min(r[0] for r in rows if r[3] == v))
    figure, axis = plt.subplots(figsize=(10, 4))
    for version in versions:
        points = [(r[0] - start, 1000 * r[1]) for r in rows if r[3] == version]
        axis.scatter(*zip(*points), s=3, label=f"model {version}")
    for label, at in marks.items():
        axis.axvline(at - start, color="grey", linestyle="--")
        axis.text(at - start, axis.get_ylim()[1] * 0.9, label, rotation=90, va="top", fontsize=8)
    axis.set_yscale("log")
    axis.set_xlabel("seconds")
    axis.set_ylabel("recommendation latency (ms)")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=20.0, help="load before the baseline, not counted in it")
    parser.add_argument("--baseline-s", type=float, default=60.0)
    parser.add_argument("--train-minutes", type=float, default=4.0)
    parser.add_argument("--after-s", type=float, default=30.0)
    parser.add_argument("--timeline", help="also write every request as [sent (monotonic s), latency s, ok, "
                        "model, user model], to line it up with other traces of the same run")
    args = parser.parse_args()
    config = DynrecConfig.load(None)
    run_name = f"{config.source.label}-retrained-{int(time.time())}"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        serve_config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
        for app in serve_config["applications"]:
            app["logging_config"] = {"enable_access_log": False}
        (folder / "serve.yaml").write_text(yaml.safe_dump(serve_config))
        train_config = folder / "train.yaml"
        train_config.write_text(yaml.safe_dump({"train": {"run_name": run_name, "max_minutes": args.train_minutes,
                                                          "threads_per_worker": 1, "cpus_per_worker": 0.25, "priority": "idle",
                                                          "publish": False}}))
        server = start_serve(folder / "serve.yaml", folder / "serve.log")
        traffic = Traffic(args.rate)
        store = open_store(config)
        try:
            wait_until_ok(lambda: requests.get(f"{BASE}/healthz", timeout=5), 900, every_s=2)
            traffic.thread.start()
            time.sleep(args.warmup_s)
            baseline_from = time.monotonic()
            time.sleep(args.baseline_s)
            before = max({r[3] for r in traffic.rows if r[3]}, key=lambda v: sum(r[3] == v for r in traffic.rows))
            train_started = time.monotonic()
            env = {**os.environ, "RAY_ADDRESS": cluster_address(server), "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
            with open(folder / "train.log", "w") as log:
                done = subprocess.run([sys.executable, "-m", "training.train", "--config", str(train_config)],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=start_idle)
            if done.returncode != 0:
                raise RuntimeError((folder / "train.log").read_text()[-3000:])
            trained = time.monotonic()
            metrics = json.loads((config.paths.run(run_name) / "metrics.json").read_text())
            from training.train import publish_to_service

            publish_config = DynrecConfig.from_dict({**config.to_dict(), "train": {**config.to_dict()["train"], "run_name": run_name}})
            publish_to_service(publish_config, config.paths.run(run_name) / "model.pt", metrics.get("best_ndcg@10"), force=True)
            published_at = time.monotonic()
            new = published_model(store).fingerprint
            deadline = published_at + 600
            while time.monotonic() < deadline:
                old = [r[0] for r in traffic.rows if r[3] == before]
                if old and time.monotonic() - max(old) > args.after_s:
                    break
                time.sleep(1)
            traffic.stop.set()
            traffic.thread.join()
        finally:
            traffic.stop.set()
            store.close()
            stop_serve(server)
    rows = traffic.rows
    last_old = max(r[0] for r in rows if r[3] == before)
    swap = percentiles(rows, published_at, last_old + 1)
    results = {
        "swap_s": round(last_old - published_at, 2),
        "errors": sum(not r[2] for r in rows if r[0] >= published_at),  # from the publication on: the swap's
        "errors_all": sum(not r[2] for r in rows),
        "mixed_version_responses": sum(1 for r in rows if r[3] and r[4] and r[3] != r[4]),
        "p99_during_swap_ms": swap.get("p99_ms"),
        "during_swap": swap,
        "baseline": percentiles(rows, baseline_from, train_started),
        "errors_by_stretch": {
            "warmup": sum(not r[2] for r in rows if r[0] < baseline_from),
            "baseline": sum(not r[2] for r in rows if baseline_from <= r[0] < train_started),
            "training": sum(not r[2] for r in rows if train_started <= r[0] < published_at),
            "swap_and_after": sum(not r[2] for r in rows if r[0] >= published_at),
        },
        "failures": [{"at_s": round(t - rows[0][0], 1), "route": route, "status": status, "error": text}
                     for t, route, status, text in traffic.failures[:50]],
        "during_training": percentiles(rows, train_started, trained),
        # the training job's processes boot in its first 90 s or so; then it runs epochs
        "during_training_first_90s": percentiles(rows, train_started, min(trained, train_started + 90)),
        "during_training_after_90s": percentiles(rows, train_started + 90, trained),
        "after_swap": percentiles(rows, last_old + 1, float("inf")),
        "requests": len(rows),
        "responses_by_model": {v: sum(1 for r in rows if r[3] == v) for v in (before, new)},
        "training": {"run": run_name, "wall_s": round(trained - train_started, 1),
                     "best_valid_ndcg@10": metrics.get("best_ndcg@10"), "test_ndcg@10": metrics.get("test_ndcg@10")},
        "settings": vars(args),
        "machine": machine(),
    }
    path = write_results("swap", results)
    if args.timeline:
        Path(args.timeline).write_text(json.dumps({"marks": {"training_starts": train_started, "published": published_at},
                                             "rows": rows}))
    plot(rows, {"training starts": train_started, "published": published_at, "last old response": last_old},
         RESULTS_DIR / "swap.png")
    print(f"\n{'stretch':<26}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for stretch in ("baseline", "during_training", "during_training_first_90s", "during_training_after_90s",
                    "during_swap", "after_swap"):
        s = results[stretch]
        print(f"{stretch:<26}{s['requests']:>9}{s.get('p50_ms', float('nan')):>9}{s.get('p99_ms', float('nan')):>9}")
    print(f"\nswap {results['swap_s']} s, errors {results['errors']}, mixed {results['mixed_version_responses']}\nwrote {path}")


if __name__ == "__main__":
    main()
