"""Serving benchmark (DESIGN.md protocol): the real app from serve_config.yaml under open-loop load.

    .venv/bin/python -m bench.serve_load [--rates 5,10,15,20,25,50] [--seconds 30] [--rounds 3] [--skip-growth | --growth-only]
                                         [--home PATH]
    .venv/bin/python -m bench.serve_load --soak [--soak-minutes 5] [--rates R]

By default it builds a fresh home first, as the quickstart's first start does on a clone (ML-1M
imported into a new SQLite store, the bootstrap model trained, the catalogue embedded); only the
content-encoder cache of $DYNREC_HOME (~/.dynrec) is copied in when it exists, since encoder
outputs depend on nothing but the content (`--keep-home PATH` builds it at PATH and keeps it).
The home is prepared in a child process, never in the one that sends and times the load.
`--home` serves an existing home as it is instead.
Starts `serve run` on serve_config.yaml (ML-1M catalogue; access logs off)
with a no-op app of the same depth beside it on /noop, then in one run:
- open-loop load at each rate: 80% recommendation requests, 20% event batches (1-5 events);
- the same load at each rate against the no-op app (the floor), the two alternating in `--rounds`
  stretches, and the ratios, and the highest rate at which neither had an error;
- freshness (first, on the idle service): event -> changed recommendations, and item upsert ->
  retrievable (in /similar);
- peak memory of the app (every process under `serve run` but the no-op replicas): the sum of
  RSS, and the sum of PSS (shared library pages counted once), with a per-process breakdown;
- ranking cost as the catalogue grows to 10k / 100k / 1M items (synthetic embeddings added to the
  ML-1M catalogue, measured in-process on the Ranker's code).
Writes bench/results/serve_load.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
import yaml
from tqdm import tqdm

from bench.common import (
    RESULTS_DIR,
    ROOT,
    machine,
    process_tree,
    start_serve,
    stop_serve,
    write_results,
)
from dynrec.client import ApiError, AsyncClient, Client, Retries, wait_until_ok
from dynrec.config import DynrecConfig

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


def process_memory(pid: int) -> tuple[str, int, int] | None:
    """(label, RSS bytes, PSS bytes) of one process. RSS counts shared pages (libraries, torch) in
    every process that maps them; PSS splits them between those processes, so PSS sums to what the
    app really holds. The label is Ray's process title (e.g. ray::ServeReplica:dynrec:Ranker)."""
    try:
        title = (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace") or "?").split(" ")[0]
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup[1:] if line.split()[-1] == "kB"}
    return title[:60], fields.get("Rss", 0), fields.get("Pss", 0)


class MemorySampler(threading.Thread):
    """Peak memory of the app: every process under `serve run` except the no-op floor's replicas."""

    def __init__(self, root: int, every_s: float = 2.0):
        super().__init__(daemon=True)
        self.root, self.every_s = root, every_s
        self.peak_rss = self.peak_pss = self.last_rss = 0
        self.at_peak: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            rows = [m for m in map(process_memory, process_tree(self.root)) if m and "noop" not in m[0].lower()]
            rss, pss = sum(r for _, r, _ in rows), sum(p for _, _, p in rows)
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss, rss)
            if pss > self.peak_pss:
                self.peak_pss = pss
                by_label: dict[str, float] = {}
                for label, _, p in rows:
                    by_label[label] = by_label.get(label, 0) + p / 2**30
                self.at_peak = dict(sorted(by_label.items(), key=lambda kv: -kv[1]))


def wait_healthy(timeout_s: float = 900) -> None:
    """Both apps answering: dynrec's /healthz, then the no-op app."""
    wait_until_ok(lambda: requests.get(f"{BASE}/healthz", timeout=5), timeout_s, every_s=2)
    wait_until_ok(lambda: requests.post(f"{BASE}/noop/v1/recommendations", json={"user_id": "1"}, timeout=5), timeout_s, every_s=2)


def related_items(client: Client) -> list[str]:
    """The items the load's events name: the 500 most similar to Star Wars: Episode IV."""
    return [i.item_id for i in client.similar("260", 500).items]


def request_mix(rng: random.Random, users: list[str], items: list[str]) -> tuple[str, dict]:
    """One request of the mix: a recommendation for a user (80%), or 1-5 view events of one user."""
    if rng.random() < 0.8:
        return "/v1/recommendations", {"user_id": rng.choice(users), "num_results": 10}
    user = rng.choice(users)
    events = [{"user_id": user, "item_id": rng.choice(items), "event_type": "view"} for _ in range(rng.randint(1, 5))]
    return "/v1/events", {"events": events}


@dataclass
class Load:
    """What open-loop stretches measured, pooled: latencies (ms) by path, errors, requests sent, seconds."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"/v1/recommendations": [], "/v1/events": []})
    errors: int = 0
    sent: int = 0
    seconds: float = 0.0

    def add(self, other: Load) -> Load:
        for path, values in other.latencies.items():
            self.latencies[path].extend(values)
        self.errors, self.sent, self.seconds = self.errors + other.errors, self.sent + other.sent, self.seconds + other.seconds
        return self

    def summary(self, rate: float) -> dict:
        recs, events = self.latencies["/v1/recommendations"], self.latencies["/v1/events"]
        return {
            "rate_rps": rate,
            "sent": self.sent,
            "errors": self.errors,
            "throughput_rps": (len(recs) + len(events)) / self.seconds,
            "p50_ms": float(np.percentile(recs, 50)) if recs else None,
            "p95_ms": float(np.percentile(recs, 95)) if recs else None,
            "p99_ms": float(np.percentile(recs, 99)) if recs else None,
            "events_p50_ms": float(np.percentile(events, 50)) if events else None,
        }


async def open_loop(prefix: str, rate: float, seconds: float, users: list[str], items: list[str], seed: int) -> Load:
    """Send at a fixed rate whatever the responses do (open loop); latency per request."""
    rng = random.Random(seed)
    load = Load()

    async def one(client: AsyncClient, path: str, body: dict):
        started = time.perf_counter()
        try:
            if path == "/v1/events":
                await client.events(body["events"])
            else:
                await client.recommendations(**body)
        except ApiError:
            load.errors += 1
            return
        load.latencies[path].append(1000 * (time.perf_counter() - started))

    async with AsyncClient(f"{BASE}{prefix}", retries=Retries(attempts=1)) as client:  # a failure counts, never retried
        tasks, start = [], time.perf_counter()
        load.sent = int(rate * seconds)
        for i in range(load.sent):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, *request_mix(rng, users, items))))
        await asyncio.gather(*tasks)
        load.seconds = time.perf_counter() - start
    return load


def against_floor(rate: float, seconds: float, rounds: int, users: list[str], items: list[str]) -> tuple[dict, dict]:
    """dynrec's and the no-op app's figures at `rate`, `seconds` each, sent in `rounds` alternating
    stretches (dynrec, no-op, no-op, dynrec, ...) with the same requests for both in each round:
    the machine is shared, and a burst of outside load during one app's only stretch had skewed
    the ratio either way (the no-op's own p50 at 5 rps ranged 13-46 ms between runs)."""
    pooled = {"": Load(), "/noop": Load()}
    for round_ in range(rounds):
        for prefix in ("", "/noop") if round_ % 2 == 0 else ("/noop", ""):
            pooled[prefix].add(asyncio.run(open_loop(prefix, rate, seconds / rounds, users, items, seed=int(rate) * 100 + round_)))
    return pooled[""].summary(rate), pooled["/noop"].summary(rate)


def freshness(users: list[str], trials: int = 200, item_trials: int = 20) -> dict:
    """ms from sending an event to the user's interest having moved (`trials` users), and from
    sending an item upsert to the item appearing among a related item's similar items
    (`item_trials` items, each hidden again after). One kept-alive connection, as a product
    service would hold. Of 30 trials, as this took before, the p99 is the slowest one: a single
    stall of this shared machine decided it.

    Interest, not exclusion: the user rates an unseen item from far down their list (the 50th),
    and the measure waits for the scores of their top 10 to change, asked with seen items
    included and exploration off, the rated item left out of the comparison. Only a new user
    embedding changes those scores; a list that changed because a rated item dropped out of it
    (what this measured before) does not count.

    The floor of the first is the same two calls (an event, then a recommendation) against the
    no-op app, interleaved trial by trial: what Serve's hops alone cost on this machine."""
    http, noop = Client(BASE), Client(f"{BASE}/noop")
    event_ms, ack_ms, item_ms, floor_ms = [], [], [], []
    for trial in range(trials):
        started = time.perf_counter()
        noop.events([{"user_id": users[trial], "item_id": "1", "event_type": "rating"}])
        noop.recommendations(users[trial], 10)
        floor_ms.append(1000 * (time.perf_counter() - started))
        user = users[trial]
        rated = http.recommendations(user, 50, exploration={"weight": 0}).items[-1].item_id

        def top_scores() -> list[tuple[str, float]]:
            answer = http.recommendations(user, 10, exclude_seen=False, exploration={"weight": 0})
            return [(i.item_id, round(i.score, 5)) for i in answer.items if i.item_id != rated]

        before = top_scores()
        started = time.perf_counter()
        http.events([{"user_id": user, "item_id": rated, "event_type": "rating", "value": 5}])
        ack_ms.append(1000 * (time.perf_counter() - started))
        while True:
            if top_scores() != before:
                event_ms.append(1000 * (time.perf_counter() - started))
                break
            if time.perf_counter() - started > 10:
                event_ms.append(float("inf"))
                break
    related = http.get_item("260")  # Star Wars: Episode IV
    for trial in range(item_trials):
        item_id = f"bench-new-{trial}-{int(time.time())}"
        started = time.perf_counter()
        http.put_item(item_id, f"Star Wars: Episode {trial + 10} - Rebels Rising", categories=related.categories,
                      text="A space opera: the rebels, the Empire and the Jedi fight across the galaxy.")
        while True:
            if item_id in [i.item_id for i in http.similar("260", 100).items]:
                item_ms.append(1000 * (time.perf_counter() - started))
                break
            if time.perf_counter() - started > 10:
                item_ms.append(float("inf"))
                break
        http.delete_item(item_id)
    return {
        "freshness_interest_p50_ms": float(np.percentile(event_ms, 50)),
        "freshness_interest_p99_ms": float(np.percentile(event_ms, 99)),
        "event_ack_p50_ms": float(np.percentile(ack_ms, 50)),
        "freshness_event_floor_p50_ms": float(np.percentile(floor_ms, 50)),
        "freshness_event_floor_p99_ms": float(np.percentile(floor_ms, 99)),
        "freshness_item_p50_ms": float(np.percentile(item_ms, 50)),
        "freshness_item_p99_ms": float(np.percentile(item_ms, 99)),
    }


def catalogue_growth(sizes=(10_000, 100_000, 1_000_000), queries: int = 200, rounds: int = 3) -> dict:
    """In-process p50 of the Ranker's `recommend` (retrieval, seen-filtering, reasons, new-item
    slots) with the ML-1M catalogue grown to each size, and the index's recall@10 against exact
    search. The extra items go through `Catalog.add_items`, so they take the same paths as
    real items. Their embeddings are drawn from a Gaussian fitted to the real items' embeddings
    (see `like_catalogue`); each takes the text, categories and trained ID row of the real item
    nearest to it.

    A second catalogue stays at the smallest size, and each larger size is timed in `rounds`
    passes alternating with it, so each ratio compares times taken side by side: timed minutes
    apart, the 10k figure alone ranged 0.36-0.77 ms between runs on this shared machine."""
    from dynrec.artifacts.prepare import ensure_artifacts
    from dynrec.config import DynrecConfig
    from dynrec.index.hnsw import HnswIndex
    from dynrec.items.catalog import Catalog
    from dynrec.models.model import load_model
    from dynrec.models.runtime import ModelRuntime
    from dynrec.state import open_store
    from dynrec.users.sessions import UserSessions

    config = DynrecConfig()
    artifacts = ensure_artifacts(config)
    model, item_ids, _ = load_model(artifacts.model_path)
    runtime = ModelRuntime(model, config.runtime)
    smallest, catalog = (Catalog.boot(config, artifacts, runtime, item_ids, open_store(config)) for _ in range(2))
    sessions = UserSessions(config, catalog)
    views = [sessions.view(str(u)) for u in range(1, 1 + queries)]
    real = catalog.index.vectors(catalog.ids)
    grow(smallest, sizes[0], real, np.random.default_rng(0))
    draws = np.random.default_rng(0)  # the same draws: the smallest size's items are the same in both
    results = {}
    for size in sizes:
        build_s = grow(catalog, size, real, draws)
        times, reference = side_by_side(catalog, smallest, views, rounds)
        results[str(size)] = {"index": type(catalog.index).__name__, "p50_ms": statistics.median(times),
                              "p99_ms": float(np.percentile(times, 99)), "build_s": build_s,
                              f"p50_ms_at_{sizes[0]}_alongside": statistics.median(reference),
                              f"p50_over_{sizes[0]}": statistics.median(times) / statistics.median(reference),
                              "recall@10": retrieval_recall(catalog, views[:50])}
        if isinstance(catalog.index, HnswIndex):
            results[str(size)]["expansion_search"] = expansion_sweep(catalog, smallest, views, rounds)
        print(f"  {size:>9,} items ({type(catalog.index).__name__}): recommend p50 {results[str(size)]['p50_ms']:.2f} ms "
              f"({results[str(size)][f'p50_over_{sizes[0]}']:.2f}x the {sizes[0]:,}-item p50 of "
              f"{statistics.median(reference):.2f} ms beside it), recall@10 {results[str(size)]['recall@10']:.3f}", flush=True)
    results["p50_1m_over_10k"] = results[str(sizes[-1])][f"p50_over_{sizes[0]}"]  # the default sizes
    return results


def grow(catalog, size: int, real: np.ndarray, rng: np.random.Generator) -> float:
    """Add synthetic items (see `catalogue_growth`) until `catalog` holds `size`; returns the seconds taken."""
    from dynrec.items.catalog import ItemMeta

    extra = size - len(catalog.ids)
    began = time.perf_counter()
    for start in tqdm(range(0, extra, 50_000), desc=f"grow to {size:,}", unit="chunk", leave=False):
        count = min(50_000, extra - start)
        vectors = like_catalogue(real, count, rng)
        source = np.argmax(vectors @ real.T, axis=1)
        first = len(catalog.ids)
        metas = [ItemMeta(f"synthetic-{first + j}", f"Synthetic {first + j}", catalog.meta[s].categories, -1, {})
                 for j, s in enumerate(source)]
        catalog.add_items(metas, catalog.text[source], vectors, catalog.model_index[source])
    return time.perf_counter() - began


def recommend_times(catalog, views) -> list[float]:
    """ms per in-process `recommend` (top 10, seen excluded, defaults otherwise) for every view,
    after a warm-up. One pass; `side_by_side` alternates passes between two catalogues."""
    from dynrec.ranking.ranker import Filters, recommend

    for view in views[:10]:
        recommend(catalog, view, 10, Filters(), True, 200, 0.0, 1)
    times = []
    for view in views:
        began = time.perf_counter()
        recommend(catalog, view, 10, Filters(), True, 200, 0.0, 1)
        times.append(1000 * (time.perf_counter() - began))
    return times


def expansion_sweep(catalog, smallest, views, rounds: int, values=(32, 64, 128, 256)) -> dict:
    """recommend p50 and recall@10 at each HNSW `expansion_search`: the trade the default sits on.
    Each value is timed alternating with the `smallest` catalogue, as the sizes are."""
    default = catalog.index.expansion_search
    sweep = {}
    for value in values:
        catalog.index.expansion_search = value
        times, reference = side_by_side(catalog, smallest, views, rounds)
        sweep[str(value)] = {"p50_ms": statistics.median(times), "p50_over_smallest": statistics.median(times) / statistics.median(reference),
                             "recall@10": retrieval_recall(catalog, views[:50])}
        print(f"    expansion_search {value}: recommend p50 {sweep[str(value)]['p50_ms']:.2f} ms "
              f"({sweep[str(value)]['p50_over_smallest']:.2f}x), recall@10 {sweep[str(value)]['recall@10']:.3f}", flush=True)
    catalog.index.expansion_search = default
    return sweep


def side_by_side(catalog, smallest, views, rounds: int) -> tuple[list[float], list[float]]:
    """recommend times on `catalog` and on `smallest`, in `rounds` alternating passes over `views`."""
    times, reference = [], []
    for _ in range(rounds):
        reference += recommend_times(smallest, views)
        times += recommend_times(catalog, views)
    return times, reference


def like_catalogue(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit vectors from a Gaussian with the mean and covariance of `real` (rows of unit
    embeddings): synthetic items shaped like the catalogue. The ML-1M embeddings span about 9
    effective dimensions (participation ratio of the covariance spectrum) and sit in a cone (mean
    norm 0.74); the draws match both. Real embeddings plus isotropic noise, used before, spanned
    62: a catalogue of noise, unlike any trained model's and the worst case for an approximate index."""
    mean = real.mean(axis=0, dtype=np.float64)
    vectors = rng.multivariate_normal(mean, np.cov(real, rowvar=False), size=count, method="eigh").astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def retrieval_recall(catalog, views, k: int = 10) -> float:
    """Mean share of the exact top-k (unseen items, by inner product over every item) that the
    catalogue's index returns: 1.0 for the exact index, what HNSW gives up for its speed."""
    ids = catalog.index.ids()
    matrix = catalog.index.vectors(ids)
    shares = []
    for view in views:
        order = np.argsort(-(matrix @ view.embedding))
        exact = [ids[o] for o in order[: k + len(view.seen)] if ids[o] not in view.seen][:k]
        found = catalog.index.search(view.embedding, k, view.seen)[0]
        shares.append(len(set(found) & set(exact)) / k)
    return float(np.mean(shares))


def soak(args) -> None:
    """The highest rate that had zero errors, for `--soak-minutes`: errors, latency, and RSS
    growth against its value after a minute's warm-up (bench/results/soak.json)."""
    last = json.loads((Path(__file__).parent / "results" / "serve_load.json").read_text())
    rate = float(args.rates.split(",")[0]) if args.rates_given else last["highest_clean_rate_rps"]
    with tempfile.TemporaryDirectory() as folder:
        server = start_serve(bench_config(Path(folder)), Path(folder) / "serve.log")
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            wait_healthy()
            users = [str(u) for u in range(1, 3000)]
            items = related_items(Client(BASE))
            asyncio.run(open_loop("", rate, 60, users, items, seed=1))  # warm-up
            time.sleep(2 * sampler.every_s)
            warm_rss, sampler.peak_rss = sampler.last_rss, 0
            run = asyncio.run(open_loop("", rate, 60 * args.soak_minutes, users, items, seed=2)).summary(rate)
            time.sleep(2 * sampler.every_s)
        finally:
            sampler.stop.set()
            stop_serve(server)
    results = {**run, "minutes": args.soak_minutes, "warm_rss_gb": warm_rss / 2**30, "peak_rss_gb": sampler.peak_rss / 2**30,
               "final_rss_gb": sampler.last_rss / 2**30, "rss_growth": sampler.peak_rss / warm_rss - 1, "machine": machine()}
    path = write_results("soak", results)
    print(f"soak at {rate:g} rps for {args.soak_minutes:g} min: errors {run['errors']}, p50 {run['p50_ms']:.1f} ms, "
          f"p99 {run['p99_ms']:.1f} ms, RSS {warm_rss / 2**30:.2f} -> peak {sampler.peak_rss / 2**30:.2f} GB "
          f"({100 * results['rss_growth']:+.1f} %)\nwrote {path}")


def fresh_home(home: Path) -> float:
    """Make `home` this process's (and the service's) DYNREC_HOME, prepared as a first start on a
    clone prepares it, in a child process; returns the seconds the preparation took. The child keeps
    the preparation's heap, threads and libraries out of the process that sends and times the load:
    prepared in this process, homes left the load's p99 at 44-134 ms in ten runs, against 18-22 ms
    with the same kind of home prepared apart (serve_load_repeats/, run 22 onwards)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        seconds = child.submit(prepare_home, home).result()
    os.environ["DYNREC_HOME"] = str(home)
    return seconds


def prepare_home(home: Path) -> float:
    """`fresh_home`'s preparation, in the process that runs it."""
    from dynrec.artifacts.prepare import ensure_artifacts
    from dynrec.state.imports import import_if_empty

    cache = DynrecConfig.load(None).paths.cache
    os.environ["DYNREC_HOME"] = str(home)
    config = DynrecConfig.load(None)
    if cache.is_dir():
        shutil.copytree(cache, config.paths.cache)
    started = time.monotonic()
    print(f"preparing a fresh home in {home} ...", flush=True)
    import_if_empty(config)
    ensure_artifacts(config, progress=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="5,10,15,20,25,50")
    parser.add_argument("--seconds", type=float, default=30, help="per app and rate")
    parser.add_argument("--rounds", type=int, default=3, help="alternating stretches the seconds are split into")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--growth-only", action="store_true", help="only the catalogue-size step, merged into the results")
    parser.add_argument("--soak", action="store_true",
                        help="run the highest error-free rate of the last load run (or --rates) for --soak-minutes")
    parser.add_argument("--soak-minutes", type=float, default=5.0)
    parser.add_argument("--home", help="serve this prepared home as it is (default: build a fresh one)")
    parser.add_argument("--keep-home", help="build the fresh home here (a new folder) and keep it afterwards")
    args = parser.parse_args()
    args.rates_given = any(a.startswith("--rates") for a in sys.argv[1:])
    if args.soak:
        soak(args)
        return
    if args.growth_only:
        growth = catalogue_growth()
        path = write_results("serve_load", {"catalogue_growth": growth, "p50_1m_over_10k": growth["p50_1m_over_10k"]}, merge=True)
        print(f"p50 at 1M over 10k: {growth['p50_1m_over_10k']:.2f}\nwrote {path}")
        return
    rates = [float(r) for r in args.rates.split(",")]
    results: dict = {"machine": machine()}
    results["home"] = args.home or "fresh"
    home = tempfile.TemporaryDirectory()  # removed on exit; the growth step below reads it too
    if args.home:
        os.environ["DYNREC_HOME"] = str(Path(args.home).expanduser().resolve())
    else:
        results["fresh_home_prepare_s"] = fresh_home(Path(args.keep_home) if args.keep_home else Path(home.name) / "home")
    with tempfile.TemporaryDirectory() as folder:
        server = start_serve(bench_config(Path(folder)), Path(folder) / "serve.log")
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            started = time.monotonic()
            wait_healthy()
            results["startup_s"] = time.monotonic() - started
            print(f"service up in {results['startup_s']:.0f} s", flush=True)
            users = [str(u) for u in range(1, 3000)]
            items = related_items(Client(BASE))
            asyncio.run(open_loop("", 5, 5, users, items, seed=99))  # warm-up
            # freshness first, on an idle service: the top rate may overload it and leave a backlog
            results.update(freshness(users))
            print(f"  freshness: interest p99 {results['freshness_interest_p99_ms']:.0f} ms (no-op floor "
                  f"{results['freshness_event_floor_p99_ms']:.0f} ms), item p99 {results['freshness_item_p99_ms']:.0f} ms", flush=True)
            runs = []
            results["rounds"] = args.rounds
            results["load_average_before"] = os.getloadavg()  # other work on the machine shows here
            for rate in rates:  # each rate against the no-op floor at the same rate, interleaved
                run, noop = against_floor(rate, args.seconds, args.rounds, users, items)
                run.update(noop_p50_ms=noop["p50_ms"], noop_p99_ms=noop["p99_ms"], noop_errors=noop["errors"],
                           p50_over_noop=run["p50_ms"] / noop["p50_ms"], p99_over_noop=run["p99_ms"] / noop["p99_ms"])
                runs.append(run)
                print(f"  {rate:>5.0f} rps: dynrec p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, errors {run['errors']}"
                      f" | no-op p50 {noop['p50_ms']:.1f} ms, p99 {noop['p99_ms']:.1f} ms, errors {noop['errors']}", flush=True)
            results["load_average_after"] = os.getloadavg()
            at_top = runs[-1]
            clean = [r for r in runs if r["errors"] == 0 and r["noop_errors"] == 0]
            results["highest_clean_rate_rps"] = clean[-1]["rate_rps"] if clean else None
            results.update({
                "rates": runs,
                "rate_rps": at_top["rate_rps"],
                "p50_ms": at_top["p50_ms"],
                "p99_ms": at_top["p99_ms"],
                "errors": at_top["errors"],
                "noop_p50_ms": at_top["noop_p50_ms"],
                "noop_p99_ms": at_top["noop_p99_ms"],
                "p50_over_noop": at_top["p50_over_noop"],
                "p99_over_noop": at_top["p99_over_noop"],
            })
        finally:
            sampler.stop.set()
            results["peak_rss_gb"] = sampler.peak_rss / 2**30
            results["peak_pss_gb"] = sampler.peak_pss / 2**30
            results["pss_gb_by_process_at_peak"] = sampler.at_peak
            stop_serve(server)
    # a load run replaces the load figures whole, keeping only the growth step's (run separately)
    previous = RESULTS_DIR / "serve_load.json"
    if previous.exists() and args.skip_growth:
        kept = json.loads(previous.read_text())
        results.update({k: kept[k] for k in ("catalogue_growth", "p50_1m_over_10k") if k in kept})
    path = write_results("serve_load", results)  # the load figures survive a failure below
    if not args.skip_growth:
        print("catalogue growth (in-process ranking) ...", flush=True)
        results["catalogue_growth"] = catalogue_growth()
        results["p50_1m_over_10k"] = results["catalogue_growth"]["p50_1m_over_10k"]
    path = write_results("serve_load", results)
    print(f"\n{'figure':<26} {'value':>10}")
    for key in ("highest_clean_rate_rps", "rate_rps", "p50_ms", "p99_ms", "noop_p50_ms", "noop_p99_ms", "p50_over_noop", "p99_over_noop", "errors",
                "freshness_interest_p99_ms", "freshness_event_floor_p99_ms", "freshness_item_p99_ms", "peak_rss_gb", "peak_pss_gb", "p50_1m_over_10k"):
        if results.get(key) is not None:
            print(f"{key:<26} {results[key]:>10.3f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
