"""Replica start-up on ML-1M: how long a Ranker and a UserState replica take from a fresh process to
ready, before and after the service booted from the state store.

    .venv/bin/python -m bench.startup --home DIR [--before-code DIR] [--repeats 3]

DIR is a prepared ML-1M home (`dynrec import --dataset ml-1m`, then any start of the service, so
the model and embeddings exist). Each figure is the median wall time of fresh Python processes that
do what the replica's constructor does: load the served artefacts, build the catalogue (the
Ranker), then the users (UserState); Ray's own actor start-up is left out, being the same on both
sides. `after` is a first start on the store (no snapshots: the catalogue is built from the store's
records and events, the users from its events); `after_snapshot` every later start, from the
catalogue's compacted snapshot and the shard's snapshot. `--before-code` names a checkout of the code before the
change (e.g. `git worktree add /tmp/before 61005a3`), which rebuilt both from the dataset files;
it is timed on the same home in the same run.

Writes bench/results/startup.json as {"before": {"user_state_s", "ranker_s"}, "after": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import machine, write_results

ROOT = Path(__file__).resolve().parent.parent

# What a replica's constructor does, timed in phases; run under either code. The code before the
# change rebuilt users from the dataset and then called `recover`; the current code boots in the
# constructor from the snapshot named there.
REPLICA = """
import json, sys, time
started = time.perf_counter()
from deployments.common import load_served, state_store
try:
    from dynrec.users.sessions import UserSessions
except ImportError:  # the code before the change kept it in dynrec.serving
    from dynrec.serving.users import UserSessions
served = load_served()
catalog = served.catalog(state_store(served.config))
ranker_s = time.perf_counter() - started
if hasattr(UserSessions, "recover"):
    sessions = UserSessions(served.config, catalog)
    sessions.recover(catalog.store, "users-0-of-1", lambda user_id: True)
else:
    sessions = UserSessions(served.config, catalog, "users-0-of-1")
user_state_s = time.perf_counter() - started
if sys.argv[1] == "snapshot":
    sessions.save_snapshot(catalog.store, "users-0-of-1")
print(json.dumps({"ranker_s": ranker_s, "user_state_s": user_state_s, "users": len(sessions.users)}))
"""


def replica_times(code: Path, home: Path, repeats: int, snapshot: bool, first_start: bool = False) -> dict:
    from dynrec.config import DynrecConfig

    # the datasets folder as this checkout finds it (the code before the change looked beside its own)
    env = {**os.environ, "DYNREC_HOME": str(home), "PYTHONPATH": str(code), "DYNREC_DATA_DIR": str(DynrecConfig().data.data_dir)}
    env.pop("DYNREC_CONFIG", None)
    runs = []
    for _ in range(repeats):
        if first_start:
            clear_snapshots(home)
        done = subprocess.run([sys.executable, "-c", REPLICA, "snapshot" if snapshot else "-"], cwd=code, env=env,
                              capture_output=True, text=True, timeout=1800)
        if done.returncode:
            sys.exit(f"replica start failed under {code}:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "ranker_s": round(statistics.median(r["ranker_s"] for r in runs), 2),
        "user_state_s": round(statistics.median(r["user_state_s"] for r in runs), 2),
        "users": runs[-1]["users"],
        "runs": [{k: round(v, 2) for k, v in r.items()} for r in runs],
    }


def clear_snapshots(home: Path) -> None:
    """No user or catalogue snapshot: a payload of no known version counts as none."""
    from dynrec.config import DynrecConfig
    from dynrec.items import snapshot
    from dynrec.state import open_store

    store = open_store(DynrecConfig.from_dict({"home": str(home)}).with_dataset("ml-1m"))
    for name in ("users-0-of-1", snapshot.SNAPSHOT):
        store.save_snapshot(name, 0, pickle.dumps(None))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--before-code", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict = {"machine": machine(), "repeats": args.repeats}
    if args.before_code:
        results["before"] = replica_times(args.before_code, args.home, args.repeats, snapshot=False)
    results["after"] = replica_times(ROOT, args.home, args.repeats, snapshot=False, first_start=True)
    replica_times(ROOT, args.home, 1, snapshot=True)  # the shard's snapshot (the catalogue saved its own)
    results["after_snapshot"] = replica_times(ROOT, args.home, args.repeats, snapshot=False)
    print(f"\n{'code':<16}{'Ranker s':>10}{'UserState s':>13}")
    for name in ("before", "after", "after_snapshot"):
        if name in results:
            print(f"{name:<16}{results[name]['ranker_s']:>10}{results[name]['user_state_s']:>13}")
    print(f"wrote {write_results('startup', results)}")


if __name__ == "__main__":
    main()
