"""What diversity costs: NDCG@10 against intra-list diversity at several `diversity` settings.

    DYNREC_HOME=<a home that has served ML-1M> .venv/bin/python -m bench.diversity [--users 1000] [--until 2004-01-01]

In-process on the served model and catalogue (the Ranker's own `recommend`, MMR over the
`serving.candidates` retrieved). For each of `--users` users with at least 20 events in the
store, the newest event is held out: the user is embedded from the events before it, and the
held-out item is the target (NDCG@10 over the full catalogue, seen items excluded, exploration
and new-item slots off). Intra-list diversity is the mean pairwise cosine distance between the
10 results' embeddings; genre coverage counts the distinct categories among them.

Writes bench/results/diversity.json and diversity.png (the trade-off curve), prints a table.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from datetime import datetime, timezone
from itertools import islice

import numpy as np
from tqdm import tqdm

from bench.common import RESULTS_DIR, machine, write_results
from deployments.common import load_served
from dynrec.ranking.bandit import ExplorationSettings
from dynrec.ranking.ranker import Filters, recommend
from dynrec.state import open_store
from dynrec.users.sessions import UserRecord, UserSessions
from dynrec.users.shards import UserView

SETTINGS = (0.0, 0.2, 0.5, 0.8)


def held_out_views(sessions: UserSessions, users: int, until: int | None, seed: int = 0) -> list[tuple[UserView, str]]:
    """(view built from all but the newest event, that newest event's item) for `users` users;
    with `until` (unix seconds), only the events before it count."""
    rng = np.random.default_rng(seed)

    def window(user_id: str) -> list:
        return [h for h in sessions.users[user_id].history if until is None or h[2] < until]

    eligible = sorted(u for u in sessions.users if len(window(u)) >= 20)
    chosen = rng.choice(eligible, min(users, len(eligible)), replace=False)
    records, targets = [], []
    for user_id in chosen:
        history = window(user_id)
        target = history[-1][0]
        record = UserRecord(user_id, deque(history[:-1], maxlen=sessions.max_length), {h[0] for h in history[:-1]})
        records.append(record)
        targets.append(target)
    views = []
    for start in range(0, len(records), 32):
        batch = records[start : start + 32]
        _, *inputs = sessions._batch(batch, sessions.catalog)
        for record, embedding in zip(batch, sessions.catalog.runtime.embed_users(*inputs)):
            recent = list(islice(reversed(record.history), sessions.config.serving.reason_history))
            views.append(UserView(record.user_id, embedding, record.seen, recent, {}, len(record.history),
                                  sessions.catalog.model_version))
    return list(zip(views, targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--until", help="only events before this date (YYYY-MM-DD) count: leaves out what benchmarks "
                                        "and tests posted into a shared home")
    args = parser.parse_args()
    until = int(datetime.fromisoformat(args.until).replace(tzinfo=timezone.utc).timestamp()) if args.until else None
    served = load_served(threads=2)
    catalog = served.catalog(open_store(served.config))
    sessions = UserSessions(served.config, catalog)
    cases = held_out_views(sessions, args.users, until)
    no_exploration = ExplorationSettings(0.0, 1.0, 1)
    rows = []
    for diversity in SETTINGS:
        ndcg, distance, genres, times = [], [], [], []
        for view, target in tqdm(cases, desc=f"diversity {diversity}"):
            started = time.perf_counter()
            ranked = recommend(catalog, view, 10, Filters(), True, served.config.serving.candidates, diversity,
                               new_item_slots=0, exploration=no_exploration)
            times.append(time.perf_counter() - started)
            ids = [r.item_id for r in ranked]
            ndcg.append(1 / math.log2(ids.index(target) + 2) if target in ids else 0.0)
            vectors = catalog.vectors(ids)
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            similarity = vectors @ vectors.T
            distance.append(1 - (similarity.sum() - len(ids)) / (len(ids) * (len(ids) - 1)))
            genres.append(len({g for i in ids for g in catalog.item(i).categories}))
        rows.append({"diversity": diversity, "ndcg@10": float(np.mean(ndcg)), "intra_list_distance": float(np.mean(distance)),
                     "genres_in_top10": float(np.mean(genres)), "recommend_p50_ms": 1000 * float(np.median(times))})
    base = rows[0]
    for row in rows:
        row["ndcg_vs_0"] = row["ndcg@10"] / base["ndcg@10"] if base["ndcg@10"] else None
        row["distance_vs_0"] = row["intra_list_distance"] / base["intra_list_distance"]
    results = {"settings": rows, "users": len(cases), "until": args.until, "model_version": catalog.model_version, "machine": machine()}
    path = write_results("diversity", results)
    plot(rows)
    print(f"\n{'diversity':>9} {'NDCG@10':>8} {'x at 0':>7} {'distance':>9} {'x at 0':>7} {'genres':>7}")
    for r in rows:
        print(f"{r['diversity']:>9.1f} {r['ndcg@10']:>8.4f} {r['ndcg_vs_0'] or 0:>7.3f} {r['intra_list_distance']:>9.3f} "
              f"{r['distance_vs_0']:>7.3f} {r['genres_in_top10']:>7.2f}")
    print(f"\nwrote {path}")


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([r["intra_list_distance"] for r in rows], [r["ndcg@10"] for r in rows], marker="o")
    for r in rows:
        axis.annotate(f"diversity {r['diversity']:g}", (r["intra_list_distance"], r["ndcg@10"]), textcoords="offset points",
                      xytext=(5, 5), fontsize=8)
    axis.set_xlabel("intra-list distance (mean pairwise 1 - cosine, top 10)")
    axis.set_ylabel("NDCG@10 (held-out newest event)")
    axis.set_title("ML-1M: relevance against diversity (MMR)")
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / "diversity.png", dpi=110)


if __name__ == "__main__":
    main()
