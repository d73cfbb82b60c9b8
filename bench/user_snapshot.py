"""A UserState shard's periodic snapshot on ML-1M: what one costs when a few users changed, and how
long an acknowledged event waits while one is written.

    .venv/bin/python -m bench.user_snapshot --home DIR [--repeats 5] [--changed 50]

DIR is a prepared ML-1M home (`dynrec import --dataset ml-1m`, then any start of the service). The
bench works on a copy of its SQLite store, so the home is left as it was. It boots a shard as a
replica does, and writes its first snapshot. Then, `--repeats` times, it records events for
`--changed` users and takes two snapshots, in turn: one as every snapshot was written before a user
became an entry of its own (re-pickle the users changed since the last, then write every user's
bytes as one blob: "one_blob"), and one as the shard writes them now (the users changed since the
last: "changed"). Throughout, a second thread records one event at a time
through the shard, as `POST /v1/events` does, and times each durable write; the longest one that
overlapped a snapshot is the wait an acknowledged event saw. The same writes with no snapshot
running give the floor. Writes bench/results/user_snapshot.json.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import machine, write_results
from dynrec.users.sessions import UserSessions, snapshot_entry
from dynrec.users.shards import Event

SNAPSHOT = "users-0-of-1"


class EventWriter:
    """Records one event at a time for a user of its own, timing each, until stopped."""

    def __init__(self, sessions, store, items: list[str]):
        self.sessions, self.store, self.items = sessions, store, items
        self.spans: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            event = Event("bench-acks", self.items[n % len(self.items)], "view", 2_000_000_000 + n, 1.0)
            started = time.perf_counter()
            self.sessions.record(self.store, [event])
            self.spans.append((started, time.perf_counter()))
            n += 1
            time.sleep(0.005)

    def __enter__(self) -> "EventWriter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def waits_ms(self, start: float, end: float) -> list[float]:
        """Each write that overlapped [start, end], in ms."""
        return [(b - a) * 1000 for a, b in self.spans if b >= start and a <= end]


def one_blob_snapshot(sessions, store, entries: dict[str, bytes]) -> None:
    """What a snapshot did before users became entries of their own: re-pickle the users changed
    since the last, then write every user's bytes as one blob."""
    with sessions._lock:
        seq = store.latest()[1]
        entries.update((u, snapshot_entry(sessions.users[u])) for u in sessions._dirty if u in sessions.users)
        sessions._dirty.clear()
        users = dict(entries)
    store.save_snapshot("bench-one-blob", seq, pickle.dumps({"version": 3, "users": users}, protocol=5))


def timed_snapshot(sessions, store, writer: EventWriter, entries: dict[str, bytes] | None) -> dict:
    """One snapshot: as one blob of every user where `entries` (their bytes so far) is given, else
    as the shard now writes it."""
    changed = len(sessions._dirty)
    started = time.perf_counter()
    if entries is None:
        sessions.save_snapshot(store, SNAPSHOT)
    else:
        one_blob_snapshot(sessions, store, entries)
    ended = time.perf_counter()
    time.sleep(0.2)  # a write held up by the snapshot is noted once it returns
    waits = writer.waits_ms(started, ended)
    return {"users_written": changed, "snapshot_s": ended - started, "event_wait_max_ms": max(waits, default=0.0),
            "event_writes_during": len(waits)}


def copy_of_home(home: Path) -> Path:
    """A home whose state store is a copy, and whose other folders are the original's."""
    copy = Path(tempfile.mkdtemp(prefix="bench-user-snapshot-"))
    for entry in home.iterdir():
        if entry.name != "state":
            (copy / entry.name).symlink_to(entry.resolve())
    (copy / "state").mkdir()
    shutil.copy2(home / "state" / "ml-1m.sqlite", copy / "state" / "ml-1m.sqlite")
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--changed", type=int, default=50, help="users with new events between snapshots")
    args = parser.parse_args()
    home = copy_of_home(args.home)
    os.environ["DYNREC_HOME"] = str(home)
    from deployments.common import load_served, state_store

    try:
        served = load_served()
        catalog = served.catalog(state_store(served.config))
        store = catalog.store
        sessions = UserSessions(served.config, catalog, SNAPSHOT)
        sessions.save_snapshot(store, SNAPSHOT)
        entries = store.load_snapshot_entries(SNAPSHOT)[2]
        rng = np.random.default_rng(0)
        users = sorted(sessions.users)
        rows: dict[str, list[dict]] = {"one_blob": [], "changed": []}
        floor: list[float] = []
        with EventWriter(sessions, store, catalog.ids[:500]) as writer:
            for repeat in range(args.repeats):
                for kind in rows:
                    for user_id in rng.choice(users, args.changed, replace=False):
                        sessions.record(store, [Event(str(user_id), catalog.ids[int(rng.integers(len(catalog.ids)))], "view",
                                                      2_100_000_000 + repeat, 1.0)])
                    quiet = time.perf_counter()
                    time.sleep(1.0)
                    floor += writer.waits_ms(quiet, time.perf_counter())
                    rows[kind].append(timed_snapshot(sessions, store, writer, entries if kind == "one_blob" else None))
                    print(f"repeat {repeat + 1}/{args.repeats} {kind}: {rows[kind][-1]['users_written']} users, "
                          f"{rows[kind][-1]['snapshot_s'] * 1000:.0f} ms, longest event write "
                          f"{rows[kind][-1]['event_wait_max_ms']:.1f} ms", flush=True)
        results: dict = {"machine": machine(), "users": len(users), "changed_users": args.changed, "repeats": args.repeats,
                         "event_write_floor_p50_ms": float(np.percentile(floor, 50)),
                         "event_write_floor_p99_ms": float(np.percentile(floor, 99))}
        for kind, runs in rows.items():
            results[kind] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            results[kind]["runs"] = runs
        results["snapshot_speedup"] = results["one_blob"]["snapshot_s"] / results["changed"]["snapshot_s"]
        changed_wait = results["changed"]["event_wait_max_ms"]  # 0 when no event write overlapped those snapshots
        results["event_wait_max_ratio"] = results["one_blob"]["event_wait_max_ms"] / changed_wait if changed_wait else None
        write_results("user_snapshot", results)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"\n{'snapshot':<10}{'users':>7}{'ms':>9}{'longest event write ms':>24}")
    for kind in rows:
        r = results[kind]
        print(f"{kind:<10}{r['users_written']:>7}{r['snapshot_s'] * 1000:>9.0f}{r['event_wait_max_ms']:>24.1f}")
    print(f"event write with no snapshot: p50 {results['event_write_floor_p50_ms']:.1f} ms, "
          f"p99 {results['event_write_floor_p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
