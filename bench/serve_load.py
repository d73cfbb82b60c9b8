"""Serving benchmark (DESIGN.md protocol): the real app from serve_config.yaml under open-loop load.

    .venv/bin/python -m bench.serve_load [--rates 10,25,50] [--seconds 30]

Starts `serve run` on serve_config.yaml (ML-1M catalogue, trained artefacts; access logs off)
with a no-op app of the same depth beside it on /noop, then in one run:
- open-loop load at each rate: 80% recommendation requests, 20% event batches (1-5 events);
- the same load at the top rate against the no-op app (the floor), and the ratios;
- freshness: event -> changed recommendations, and item upsert -> retrievable (in /similar);
- peak RSS of the whole Ray session (every process under `serve run`);
- ranking cost as the catalogue grows to 10k / 100k / 1M items (synthetic embeddings added to the
  ML-1M catalogue, measured in-process on the Ranker's code).
Writes bench/results/serve_load.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import requests
import yaml

from bench.common import machine, write_results

ROOT = Path(__file__).resolve().parent.parent
PORT = 8000
BASE = f"http://127.0.0.1:{PORT}"


def bench_config(folder: Path) -> Path:
    """serve_config.yaml plus the no-op app on /noop, with per-request access logs off."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["applications"].append({"name": "noop", "route_prefix": "/noop", "import_path": "bench.noop_app:app"})
    for app in config["applications"]:
        app["logging_config"] = {"enable_access_log": False}
    path = folder / "serve_bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields["PPid"].strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class RssSampler(threading.Thread):
    def __init__(self, root: int, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.root, self.every_s, self.peak, self.samples = root, every_s, 0, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            value = tree_rss_bytes(self.root)
            self.samples.append((time.monotonic(), value))
            self.peak = max(self.peak, value)


def wait_healthy(timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{BASE}/healthz", timeout=5).status_code == 200:
                if requests.post(f"{BASE}/noop/v1/recommendations", json={"user_id": "1"}, timeout=5).ok:
                    return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise TimeoutError("the service did not become healthy")


def request_mix(rng: random.Random, users: list[str], items: list[str]) -> tuple[str, dict]:
    if rng.random() < 0.8:
        return "/v1/recommendations", {"user_id": rng.choice(users), "num_results": 10}
    user = rng.choice(users)
    events = [{"user_id": user, "item_id": rng.choice(items), "event_type": "view"} for _ in range(rng.randint(1, 5))]
    return "/v1/events", {"events": events}


async def open_loop(prefix: str, rate: float, seconds: float, users: list[str], items: list[str], seed: int) -> dict:
    """Send at a fixed rate whatever the responses do (open loop); latency per request."""
    rng = random.Random(seed)
    latencies: dict[str, list[float]] = {"/v1/recommendations": [], "/v1/events": []}
    errors = 0
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(session, path, body):
        nonlocal errors
        started = time.perf_counter()
        try:
            async with session.post(f"{BASE}{prefix}{path}", json=body) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    return
        except (aiohttp.ClientError, asyncio.TimeoutError):
            errors += 1
            return
        latencies[path].append(1000 * (time.perf_counter() - started))

    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=256)) as session:
        tasks, start = [], time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, *request_mix(rng, users, items))))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    recs = latencies["/v1/recommendations"]
    done = sum(len(v) for v in latencies.values())
    return {
        "rate_rps": rate,
        "sent": n,
        "errors": errors,
        "throughput_rps": done / elapsed,
        "p50_ms": float(np.percentile(recs, 50)) if recs else None,
        "p95_ms": float(np.percentile(recs, 95)) if recs else None,
        "p99_ms": float(np.percentile(recs, 99)) if recs else None,
        "events_p50_ms": float(np.percentile(latencies["/v1/events"], 50)) if latencies["/v1/events"] else None,
    }


def freshness(users: list[str], trials: int = 30) -> dict:
    """ms from sending an event to the user's recommendations having changed, and from sending an
    item upsert to the item appearing among a related item's similar items."""
    event_ms, item_ms = [], []
    for trial in range(trials):
        user = users[trial]
        before = requests.post(f"{BASE}/v1/recommendations", json={"user_id": user, "num_results": 10}).json()
        target = before["items"][0]["item_id"]
        started = time.perf_counter()
        requests.post(f"{BASE}/v1/events", json={"events": [{"user_id": user, "item_id": target, "event_type": "rating", "value": 5}]})
        while True:
            after = requests.post(f"{BASE}/v1/recommendations", json={"user_id": user, "num_results": 10}).json()
            if [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]:
                event_ms.append(1000 * (time.perf_counter() - started))
                break
            if time.perf_counter() - started > 10:
                event_ms.append(float("inf"))
                break
    related = requests.get(f"{BASE}/v1/items/260").json()  # Star Wars: Episode IV
    for trial in range(min(trials, 20)):
        item_id = f"bench-new-{trial}-{int(time.time())}"
        body = {"title": f"Star Wars: Episode {trial + 10} - Rebels Rising", "categories": related["categories"],
                "text": "A space opera: the rebels, the Empire and the Jedi fight across the galaxy."}
        started = time.perf_counter()
        requests.put(f"{BASE}/v1/items/{item_id}", json=body)
        while True:
            similar = requests.get(f"{BASE}/v1/items/260/similar", params={"num_results": 100}).json()
            if item_id in [i["item_id"] for i in similar["items"]]:
                item_ms.append(1000 * (time.perf_counter() - started))
                break
            if time.perf_counter() - started > 10:
                item_ms.append(float("inf"))
                break
        requests.delete(f"{BASE}/v1/items/{item_id}")
    return {
        "freshness_event_p50_ms": float(np.percentile(event_ms, 50)),
        "freshness_event_p99_ms": float(np.percentile(event_ms, 99)),
        "freshness_item_p50_ms": float(np.percentile(item_ms, 50)),
        "freshness_item_p99_ms": float(np.percentile(item_ms, 99)),
    }


def catalogue_growth(sizes=(10_000, 100_000, 1_000_000), queries: int = 200) -> dict:
    """In-process p50 of the Ranker's `recommend` with the ML-1M catalogue padded to each size."""
    from dynrec.config import DynrecConfig
    from dynrec.models.model import load_model
    from dynrec.models.runtime import ModelRuntime
    from dynrec.serving.artifacts import ensure_artifacts
    from dynrec.serving.catalog import Catalog
    from dynrec.serving.ranker import Filters, recommend
    from dynrec.serving.users import UserSessions

    config = DynrecConfig()
    artifacts = ensure_artifacts(config)
    model, item_ids, _ = load_model(artifacts.model_path)
    runtime = ModelRuntime(model, config.runtime)
    catalog = Catalog(config, artifacts, runtime, item_ids)
    sessions = UserSessions(config, model, catalog)
    views = [sessions.view(str(u)) for u in range(1, 1 + queries)]
    real = np.stack([catalog.index.vector(i) for i in catalog.ids])
    rng = np.random.default_rng(0)
    results = {}
    for size in sizes:
        from dynrec.index import make_index

        extra = size - len(real)
        synthetic = real[rng.integers(0, len(real), extra)] + 0.3 * rng.standard_normal((extra, real.shape[1])).astype(np.float32)
        synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
        index = make_index(real.shape[1], size)
        index.upsert(catalog.ids, real)
        for start in range(0, extra, 100_000):
            stop = min(extra, start + 100_000)
            index.upsert([f"synthetic-{i}" for i in range(start, stop)], synthetic[start:stop])
        catalog.index = index
        for view in views[:10]:
            recommend(catalog, view, 10, Filters(), True, 200, 0.0, 0)
        times = []
        for view in views:
            began = time.perf_counter()
            recommend(catalog, view, 10, Filters(), True, 200, 0.0, 0)
            times.append(1000 * (time.perf_counter() - began))
        results[str(size)] = {"index": type(index).__name__, "p50_ms": statistics.median(times),
                              "p99_ms": float(np.percentile(times, 99))}
        print(f"  {size:>9,} items ({type(index).__name__}): recommend p50 {results[str(size)]['p50_ms']:.2f} ms", flush=True)
        del index
    results["p50_1m_over_10k"] = results["1000000"]["p50_ms"] / results["10000"]["p50_ms"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,25,50")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--skip-growth", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    results: dict = {"machine": machine()}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        config = bench_config(Path(folder))
        log = open(Path(folder) / "serve.log", "w")
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "serve"), "run", str(config)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        sampler = RssSampler(server.pid)
        sampler.start()
        try:
            started = time.monotonic()
            wait_healthy()
            results["startup_s"] = time.monotonic() - started
            print(f"service up in {results['startup_s']:.0f} s", flush=True)
            users = [str(u) for u in range(1, 3000)]
            items = [i["item_id"] for i in requests.get(f"{BASE}/v1/items/260/similar", params={"num_results": 500}).json()["items"]]
            asyncio.run(open_loop("", 5, 5, users, items, seed=99))  # warm-up
            runs = []
            for rate in rates:
                run = asyncio.run(open_loop("", rate, args.seconds, users, items, seed=int(rate)))
                runs.append(run)
                print(f"  dynrec {rate:>5.0f} rps: p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, errors {run['errors']}", flush=True)
            top = rates[-1]
            noop = asyncio.run(open_loop("/noop", top, args.seconds, users, items, seed=int(top)))
            print(f"  no-op  {top:>5.0f} rps: p50 {noop['p50_ms']:.1f} ms, p99 {noop['p99_ms']:.1f} ms, errors {noop['errors']}", flush=True)
            at_top = runs[-1]
            results.update({
                "rates": runs,
                "rate_rps": top,
                "p50_ms": at_top["p50_ms"],
                "p99_ms": at_top["p99_ms"],
                "errors": at_top["errors"],
                "noop_p50_ms": noop["p50_ms"],
                "noop_p99_ms": noop["p99_ms"],
                "p50_over_noop": at_top["p50_ms"] / noop["p50_ms"],
                "p99_over_noop": at_top["p99_ms"] / noop["p99_ms"],
            })
            results.update(freshness(users))
            print(f"  freshness: event p99 {results['freshness_event_p99_ms']:.0f} ms, item p99 {results['freshness_item_p99_ms']:.0f} ms", flush=True)
        finally:
            sampler.stop.set()
            results["peak_rss_gb"] = sampler.peak / 2**30
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
            log.close()
    path = write_results("serve_load", results)  # the load figures survive a failure below
    if not args.skip_growth:
        print("catalogue growth (in-process ranking) ...", flush=True)
        results["catalogue_growth"] = catalogue_growth()
        results["p50_1m_over_10k"] = results["catalogue_growth"]["p50_1m_over_10k"]
    path = write_results("serve_load", results)
    print(f"\n{'figure':<26} {'value':>10}")
    for key in ("rate_rps", "p50_ms", "p99_ms", "noop_p50_ms", "noop_p99_ms", "p50_over_noop", "p99_over_noop", "errors",
                "freshness_event_p99_ms", "freshness_item_p99_ms", "peak_rss_gb", "p50_1m_over_10k"):
        if key in results:
            print(f"{key:<26} {results[key]:>10.3f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
