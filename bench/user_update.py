"""Per-event cost of the incremental user state against a full re-encode of the window.

    DYNREC_HOME=<a home that has served ML-1M> .venv/bin/python -m bench.user_update [--repeats 3000]

In-process on the served model (the store's published run), with one thread per ONNX Runtime
session and for torch, as a UserState replica runs them. Three measurements, in one run:

1. Per event at window 200 (the headline): `ModelRuntime.step_user` on one event after the cached
   keys and values of 199 (`incremental_ms`), against `ModelRuntime.embed_users` over the 200
   events (`full_ms`), the re-encode that every event of a full-window user cost before. Real
   windows: the newest 200 events of 20 ML-1M users with at least 200, under the served item
   vectors. On ONNX Runtime (the serving backend) and torch, and at windows 50, 100, 150 and 200
   too (`by_window`): the step's cost hardly grows with the window, the re-encode's does.
2. Per event in serving (`serving`): `--events` events, each appended to a user and to a copy of
   them; the user's embedding is updated as `UserSessions.apply` does now (`_update`: a step, or
   one encode where the window moved) and the copy's as it did before (a re-encode of the whole
   history). Medians of the stepped events and of the re-encodes, and the means over all
   (`mean_update_ms`: with the encodes when a window moves, `rebuild_share`). Appending the
   event costs both paths alike (`append_ms`).
3. Parity (`parity`): each event's embedding in 2 against a full encode of the same window, on
   ONNX Runtime and on torch.

Timing. Each path runs in blocks of `--block` consecutive events (different users, as a stream of
events is), the two paths' blocks alternating, so that outside load falls on both alike. The
medians are of a block's later calls: each path in its steady state, as serving runs one or the
other for every event. The first call of each block, right after the other path has filled the
CPU caches with its own data, is reported apart (`*_after_other_ms`): the step, being small,
suffers more from that.

Writes bench/results/user_update.json and prints a table; the machine's load average beside.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections import deque
from functools import partial

import numpy as np
import torch

from bench.common import machine, write_results
from deployments.common import load_served
from dynrec.config import RuntimeConfig
from dynrec.models.model import load_model
from dynrec.models.runtime import ModelRuntime
from dynrec.state import open_store
from dynrec.users.incremental import window_start
from dynrec.users.sessions import UserSessions
from dynrec.users.shards import Event

WINDOW = 200


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def window_inputs(sessions: UserSessions, user_id: str) -> list[np.ndarray]:
    """The user's whole history (200 events) as the graphs' inputs: (vectors, types, gaps, values)."""
    vectors, types, gaps, values = sessions._inputs(list(sessions.users[user_id].history), sessions.catalog)
    return [np.ascontiguousarray(vectors, np.float32), np.asarray(types, np.int64), np.asarray(gaps, np.float32),
            np.asarray(values, np.float32)]


def blocks(paths: dict[str, list], rounds: int, block: int) -> dict[str, tuple[list[float], list[float]]]:
    """Time each path's calls (a list of callables, cycled through) in blocks of `block`, the
    paths' blocks in turn, their order alternating by round; returns per path (steady-state
    times, first-of-block times) in ms, after two rounds of warm-up."""
    times = {name: ([], []) for name in paths}
    for r in range(rounds + 2):
        for name in (list(paths) if r % 2 else list(paths)[::-1]):
            calls = paths[name]
            for i in range(block):
                elapsed = timed(calls[(r * block + i) % len(calls)])
                if r >= 2:
                    times[name][0 if i else 1].append(elapsed)
    return times


def model_level(runtime: ModelRuntime, windows: list[list[np.ndarray]], repeats: int, block: int) -> dict:
    """At each window size n: a step (one event after n - 1 cached) against a full encode (n events)."""
    sizes = (50, 100, 150, WINDOW)
    empty = np.zeros((runtime.user_layers, 2, 0, runtime.dim), np.float32)
    by_window = {}
    for n in sizes:
        steps, fulls = [], []
        for inputs in windows:
            head = [v[:n] for v in inputs]
            _, past = runtime.step_user(*(v[: n - 1] for v in head), empty)
            past = np.ascontiguousarray(past)  # as a user's cache holds them (dynrec.users.incremental)
            steps.append(partial(runtime.step_user, *(v[n - 1 :] for v in head), past))
            fulls.append(partial(runtime.embed_users, *(v[None] for v in head), np.array([n])))
        times = blocks({"incremental": steps, "full": fulls}, max(repeats // block, 10), block)
        by_window[str(n)] = {f"{name}_ms": statistics.median(steady) for name, (steady, _) in times.items()}
        by_window[str(n)].update({f"{name}_after_other_ms": statistics.median(first) for name, (_, first) in times.items()})
    at = by_window[str(WINDOW)]
    return {**at, "ratio": at["full_ms"] / at["incremental_ms"],
            "ratio_after_other": at["full_after_other_ms"] / at["incremental_after_other_ms"],
            "repeats": max(repeats // block, 10) * (block - 1), "by_window": by_window}


def reencode(sessions: UserSessions, record) -> None:
    """What `apply` did per event before the incremental state, once the event was appended:
    re-encode the user's whole history (up to max_length events) through the user graph."""
    vectors, types, gaps, values = sessions._inputs(list(record.history), sessions.catalog)
    n = len(types)
    items = np.zeros((1, n, sessions.catalog.dim), np.float32)
    batch = [np.zeros((1, n), np.int64), np.zeros((1, n), np.float32), np.zeros((1, n), np.float32)]
    items[0], batch[0][0], batch[1][0], batch[2][0] = vectors, types, gaps, values
    record.embedding = sessions.catalog.runtime.embed_users(items, *batch, np.array([n]))[0]


def serving_level(sessions: UserSessions, users: list[str], events: int, block: int, torch_runtime: ModelRuntime,
                  rng) -> tuple[dict, dict]:
    """Events appended to users and to copies of them; the users' embeddings updated as `apply`
    does now (`_update`), the copies' as it did before (`reencode`), in alternating blocks."""
    catalog = sessions.catalog
    twins = {}
    for user_id in users:
        twin = copy.copy(sessions.users[user_id])
        twin.history, twin.seen = deque(twin.history, maxlen=sessions.max_length), set(twin.seen)
        twins[user_id] = twin
    states = sessions._states.get(catalog.model_version)
    samples = {"new": ([], []), "old": ([], [])}
    stepped, rebuilt, append_ms, windows, means = [], [], [], [], {"new": [], "old": []}
    worst = {"onnx": 0.0, "torch": 0.0}
    for r in range(events // block):
        batch = []
        for i in range(block):
            user_id = users[(r * block + i) % len(users)]
            record = sessions.users[user_id]
            item = catalog.ids[int(rng.integers(len(catalog.ids)))]
            timestamp = int(record.history[-1][2]) + int(rng.integers(1, 3600))
            batch.append(Event(user_id, item, "rating", timestamp, float(rng.integers(1, 6))))
        for path in (("new", "old") if r % 2 else ("old", "new")):
            for i, event in enumerate(batch):
                with sessions._lock:
                    if path == "new":
                        record = sessions.users[event.user_id]
                        append_ms.append(timed(partial(sessions._append, record, event)))
                        rebuilds = states.rebuilds if states is not None else 0
                        elapsed = timed(partial(sessions._update, [record]))
                        states = sessions._states[catalog.model_version]
                        warm = r * block + i >= len(users)  # each user's first event encodes: no cache yet
                        if warm:
                            (rebuilt if states.rebuilds > rebuilds else stepped).append((i, elapsed))
                    else:
                        twin = twins[event.user_id]
                        sessions._append(twin, event)
                        elapsed = timed(partial(reencode, sessions, twin))
                        warm = r * block + i >= len(users)
                if warm:
                    means[path].append(elapsed)
                    if path == "old":
                        samples["old"][0 if i else 1].append(elapsed)
        for event in batch:  # parity, untimed
            record = sessions.users[event.user_id]
            windows.append(len(record.history) - window_start(record.history, sessions.max_length))
            _, *inputs = sessions._batch([record], catalog)
            for name, runtime in (("onnx", catalog.runtime), ("torch", torch_runtime)):
                worst[name] = max(worst[name], float(np.abs(runtime.embed_users(*inputs)[0] - record.embedding).max()))
    for i, elapsed in stepped:
        samples["new"][0 if i else 1].append(elapsed)
    serving = {
        "events": len(means["new"]), "users": len(users), "block": block,
        "stepped_update_ms": statistics.median(samples["new"][0]),
        "full_update_ms": statistics.median(samples["old"][0]),
        "stepped_update_after_other_ms": statistics.median(samples["new"][1]),
        "full_update_after_other_ms": statistics.median(samples["old"][1]),
        "rebuilt_update_ms": statistics.median(e for _, e in rebuilt) if rebuilt else None,
        "mean_update_ms": statistics.fmean(means["new"]), "full_mean_update_ms": statistics.fmean(means["old"]),
        "append_ms": statistics.median(append_ms),
        "rebuild_share": len(rebuilt) / len(means["new"]), "mean_window": statistics.fmean(windows),
        "min_window": min(windows), "cached_users": len(states), "cached_mb": states.nbytes / 2**20,
    }
    serving["ratio_median"] = serving["full_update_ms"] / serving["stepped_update_ms"]
    serving["ratio_mean"] = serving["full_mean_update_ms"] / serving["mean_update_ms"]
    parity = {"onnx_max_abs_diff": worst["onnx"], "torch_max_abs_diff": worst["torch"], "events": len(windows)}
    return serving, parity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3000, help="calls timed per path and window")
    parser.add_argument("--block", type=int, default=10, help="consecutive calls of one path")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--events", type=int, default=1000, help="events applied in the serving measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = [os.getloadavg()[0]]
    served = load_served(threads=1)
    config = served.config
    if config.model.max_length != WINDOW:
        raise SystemExit(f"model.max_length is {config.model.max_length}; this benchmark measures a {WINDOW}-event window")
    catalog = served.catalog(open_store(config))
    sessions = UserSessions(config, catalog)
    model, _, _ = load_model(served.artifacts.model_path)
    torch_runtime = ModelRuntime(model, RuntimeConfig(backend="torch"))
    rng = np.random.default_rng(0)
    full = sorted(u for u, r in sessions.users.items() if len(r.history) == WINDOW)
    chosen = [str(u) for u in rng.choice(full, min(args.users, len(full)), replace=False)]
    windows = [window_inputs(sessions, u) for u in chosen]

    onnx = model_level(catalog.runtime, windows, args.repeats, args.block)
    torch_results = model_level(torch_runtime, windows, max(args.repeats // 3, 100), args.block)
    serving, parity = serving_level(sessions, chosen, args.events, args.block, torch_runtime, rng)
    load.append(os.getloadavg()[0])
    results = {
        "window": WINDOW, "incremental_ms": onnx["incremental_ms"], "full_ms": onnx["full_ms"], "ratio": onnx["ratio"],
        "backend": "onnx", "threads": 1, "onnx": onnx, "torch": torch_results, "serving": serving, "parity": parity,
        "model_version": catalog.model_version, "run": served.artifacts.run_name, "users": len(chosen),
        "load_average_1m": load, "machine": machine(),
    }
    path = write_results("user_update", results)
    print(f"\nper event at window {WINDOW}, medians (ms), 1 thread; load average {load[0]:.1f} -> {load[1]:.1f}")
    print(f"{'':<28}{'incremental':>12}{'full':>10}{'ratio':>8}   first after the other path")
    for name, r in (("ONNX Runtime (serving)", onnx), ("torch", torch_results)):
        print(f"{name:<28}{r['incremental_ms']:>12.3f}{r['full_ms']:>10.3f}{r['ratio']:>7.1f}x   "
              f"{r['incremental_after_other_ms']:.3f} / {r['full_after_other_ms']:.3f} ({r['ratio_after_other']:.1f}x)")
        print("  by window: " + ", ".join(f"{n}: {w['incremental_ms']:.3f} / {w['full_ms']:.3f}" for n, w in r["by_window"].items()))
    print(f"{'UserSessions update, step':<28}{serving['stepped_update_ms']:>12.3f}{serving['full_update_ms']:>10.3f}"
          f"{serving['ratio_median']:>7.1f}x   {serving['stepped_update_after_other_ms']:.3f} / "
          f"{serving['full_update_after_other_ms']:.3f}")
    print(f"{'  mean, with rebuilds':<28}{serving['mean_update_ms']:>12.3f}{serving['full_mean_update_ms']:>10.3f}"
          f"{serving['ratio_mean']:>7.1f}x   rebuilds {serving['rebuild_share']:.1%}, mean window {serving['mean_window']:.0f}")
    print(f"  (appending the event, the same on both paths: {serving['append_ms']:.3f} ms)")
    print(f"parity against a full encode of the same window: ONNX {parity['onnx_max_abs_diff']:.1e}, "
          f"torch {parity['torch_max_abs_diff']:.1e} over {parity['events']} events")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
