"""Cold users on ML-1M partial: how good are the first recommendations, before and after a few events?

    .venv/bin/python -m bench.cold_users [--users 600]

A seeded sample of users (with at least 6 events) is made cold: their events leave the prior's
and the popularity counts. For each, after its first n events (n = 0, 1, 3, 5, in time order),
the next item it interacted with is ranked against every item not yet seen:
- prior: what the service does. n = 0: the attribute prior (gender, age band, occupation; see
  dynrec.serving.prior). n >= 1: the user's own state, the served user model over those n events.
- popularity: global popularity (distinct users per item), the usual fallback, at every n.
- attributes_only: the attribute prior at every n, for reference.
HR@10 and NDCG@10 (ties count against the target). The served model was trained on all
ML-1M partial users, so at n >= 1 it has seen these users' sequences: treat those rows as an
upper bound; the n = 0 comparison involves no trained model.

Writes bench/results/cold_users.json as {"ml-1m": {arm: {n: {hr@10, ndcg@10}}}} and prints a table.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from bench.common import machine, write_results
from dynrec.config import DynrecConfig
from dynrec.data import Interactions, load_dataset
from dynrec.models.model import load_model
from dynrec.models.runtime import ModelRuntime
from dynrec.serving.artifacts import ensure_artifacts, vectors
from dynrec.serving.prior import AttributePrior

STEPS = (0, 1, 3, 5)


def rank_of(scores: np.ndarray, target: int, seen: np.ndarray) -> int:
    """0-based rank of `target` among unseen items; ties count against it."""
    masked = scores.copy()
    masked[seen] = -np.inf
    return int((masked >= masked[target]).sum() - 1)


def metrics(ranks: list[int], k: int = 10) -> dict:
    ranks = np.asarray(ranks)
    hit = ranks < k
    return {"hr@10": float(hit.mean()), "ndcg@10": float((hit / np.log2(ranks + 2)).mean()), "users": len(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=600, help="cold users sampled (seed 0)")
    args = parser.parse_args()
    config = DynrecConfig()
    dataset = load_dataset(config.serving.dataset, config.data.data_dir)
    interactions = Interactions.from_dataset(dataset)
    lengths = np.diff(interactions.indptr)
    rng = np.random.default_rng(0)
    cold = rng.choice(np.flatnonzero(lengths >= max(STEPS) + 1), args.users, replace=False)
    cold_ids = {str(interactions.user_ids[u]) for u in cold}

    prior = AttributePrior.fit(dataset.users, interactions, config.cold_start, exclude_users=cold_ids)
    attributes = {r["user_id"]: dict(r["attributes"] or []) for r in dataset.users.select(["user_id", "attributes"]).to_pylist()}
    warm = np.ones(interactions.n_users, bool)
    warm[cold] = False
    popularity = np.zeros(interactions.n_items)
    for u in np.flatnonzero(warm):
        popularity[np.unique(interactions.items[interactions.indptr[u] : interactions.indptr[u + 1]])] += 1

    artifacts = ensure_artifacts(config, progress=True)
    model, _, _ = load_model(artifacts.model_path)
    runtime = ModelRuntime(model, config.runtime)
    table = pq.read_table(artifacts.embeddings_path)
    position = {item_id: i for i, item_id in enumerate(table["item_id"].to_pylist())}
    item_vectors = vectors(table["embedding"])[[position[i] for i in interactions.item_ids]]
    rating = config.model.event_types.index("rating")

    ranks: dict[str, dict[int, list[int]]] = {arm: {n: [] for n in STEPS} for arm in ("prior", "popularity", "attributes_only")}
    for u in tqdm(cold, desc="cold users", unit="user"):
        lo = interactions.indptr[u]
        items = interactions.items[lo : lo + max(STEPS) + 1]
        times = interactions.timestamps[lo : lo + max(STEPS) + 1].astype(np.float64)
        values = interactions.values[lo : lo + max(STEPS) + 1]
        own = prior.scores(attributes.get(str(interactions.user_ids[u]), {}))
        own = own if own is not None else np.log(popularity + 1)
        for n in STEPS:
            seen, target = items[:n], int(items[n])
            if n == 0:
                served = own
            else:
                gaps = np.diff(times[:n], prepend=times[:1]).clip(min=0)
                embedding = runtime.embed_users(item_vectors[items[:n]][None], np.full((1, n), rating), gaps[None],
                                                values[:n][None], np.array([n]))[0]
                served = item_vectors @ embedding
            ranks["prior"][n].append(rank_of(served, target, seen))
            ranks["popularity"][n].append(rank_of(popularity, target, seen))
            ranks["attributes_only"][n].append(rank_of(own, target, seen))

    results = {arm: {str(n): metrics(r) for n, r in by_n.items()} for arm, by_n in ranks.items()}
    lift = results["prior"]["0"]["hr@10"] / max(results["popularity"]["0"]["hr@10"], 1e-12)
    write_results("cold_users", {"ml-1m": results, "prior_over_popularity_hr@10_at_0": lift, "cold_users": len(cold),
                                 "machine": machine()})
    print(f"\n{'arm':<16}" + "".join(f"{'n=' + str(n) + ' HR/NDCG@10':>24}" for n in STEPS))
    for arm, by_n in results.items():
        print(f"{arm:<16}" + "".join(f"{by_n[str(n)]['hr@10']:>13.4f} /{by_n[str(n)]['ndcg@10']:>8.4f}" for n in STEPS))
    print(f"\nat 0 events the prior's HR@10 is {lift:.2f}x global popularity's (target >= 1.10)")


if __name__ == "__main__":
    main()
