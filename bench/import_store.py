"""Import throughput: ML-1M partial (487,650 events, 3,883 items, 6,040 users) into each state store.

    .venv/bin/python -m bench.import_store [--repeats 3] [--skip-encode]

Each repeat imports into a fresh store: SQLite (WAL, synchronous=FULL) in a temporary folder, and
a real redis-server on loopback with appendonly and appendfsync always (as the tests and k8s/ run
it). Events/s and items/s count store writes only, so a figure says how fast the store takes a
source; a second pass over the same source, which finds everything stored, is timed as the
re-run. Items are then bounded by the content encoders, which the service runs when it prepares
the catalogue: `encode_items_per_s` times `encode_catalogue` on the same items from an empty cache,
and `encode_share` is the encoders' share of import plus encoding.

Writes bench/results/import.json as {"sqlite": {"events_per_s", "items_per_s", ...}, "redis": {...}}.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bench.common import machine, write_results
from dynrec.config import DynrecConfig
from dynrec.data import load_source
from dynrec.state.imports import import_dataset
from dynrec.state.redis import RedisStore
from dynrec.state.sqlite import SqliteStore


def redis_server(folder: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
         "--appendonly", "yes", "--appendfsync", "always"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port).ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)


def timed_imports(dataset, open_fresh, repeats: int, batch: int) -> dict:
    """Median first-import rates over `repeats` fresh stores, and the re-run time of the last."""
    events_rates, items_rates, totals, rerun = [], [], [], None
    for _ in range(repeats):
        store = open_fresh()
        summary = import_dataset(dataset, store, batch, progress=False)
        assert summary.events_written == dataset.events.num_rows, summary
        totals.append(summary.seconds)
        events_rates.append(summary.events_written / summary.events_seconds)
        items_rates.append(summary.items_written / summary.items_seconds)
        rerun = import_dataset(dataset, store, batch, progress=False)
        assert rerun.events_written == 0 and rerun.items_written == 0
        store.close()
    return {
        "events_per_s": round(statistics.median(events_rates)),
        "items_per_s": round(statistics.median(items_rates)),
        "import_s_median": round(statistics.median(totals), 2),
        "rerun_s": round(rerun.seconds, 2),
        "runs": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-encode", action="store_true", help="leave out the encoder timing (minutes on 2 cores)")
    args = parser.parse_args()
    config = DynrecConfig().with_dataset("ml-1m")
    started = time.perf_counter()
    dataset = load_source(config)
    results: dict = {"machine": machine(), "load_s": round(time.perf_counter() - started, 2),
                     "events": dataset.events.num_rows, "items": dataset.items.num_rows, "users": dataset.users.num_rows}
    batch = config.state.import_batch
    with tempfile.TemporaryDirectory() as folder:
        runs = iter(range(args.repeats))
        results["sqlite"] = timed_imports(dataset, lambda: SqliteStore(Path(folder) / f"run-{next(runs)}.sqlite"),
                                          args.repeats, batch)
        server = redis_server(Path(folder), 6391)
        try:
            client = redis.Redis(port=6391)

            def fresh_redis() -> RedisStore:
                client.flushall()
                return RedisStore("redis://127.0.0.1:6391/0", namespace="bench")

            results["redis"] = timed_imports(dataset, fresh_redis, args.repeats, batch)
        finally:
            server.terminate()
            server.wait(10)
        if not args.skip_encode:
            from dynrec.encoders.content import encode_catalogue

            cache = Path(folder) / "cache"
            began = time.perf_counter()
            encode_catalogue(dataset.items, cache, config=config.encoders, runtime=config.runtime, progress=True)
            encode_s = time.perf_counter() - began
            shutil.rmtree(cache, ignore_errors=True)
            results["encode_items_per_s"] = round(dataset.items.num_rows / encode_s, 1)
            for backend in ("sqlite", "redis"):
                store_s = results[backend]["import_s_median"]
                results[backend]["encode_share"] = round(encode_s / (encode_s + store_s), 3)
    print(f"\n{'store':<8}{'events/s':>10}{'items/s':>10}{'import s':>10}{'re-run s':>10}{'encoders':>10}")
    for backend in ("sqlite", "redis"):
        row = results[backend]
        share = f"{row['encode_share']:.0%}" if "encode_share" in row else "-"
        print(f"{backend:<8}{row['events_per_s']:>10,}{row['items_per_s']:>10,}{row['import_s_median']:>10}{row['rerun_s']:>10}{share:>10}")
    if "encode_items_per_s" in results:
        print(f"content encoders: {results['encode_items_per_s']} items/s (text + image, empty cache)")
    print(f"wrote {write_results('import', results)}")


if __name__ == "__main__":
    main()
