"""Cold users on ML-1M partial: how good are the first recommendations, before and after a few events?

    .venv/bin/python -m bench.cold_users [--users 600]

A seeded sample of users (with at least 6 events) is made cold: their events leave the prior's
and the popularity counts. For each, after its first n events (n = 0, 1, 3, 5, in time order),
the next 10 items it interacted with are relevant, and each arm's top 10 of the items not yet
seen is scored (ML-1M users rate many films in the same second, so "the next item" alone would
mostly be the tie-break's choice):
- prior: what the service does. n = 0: the attribute prior (gender, age band, occupation; see
  dynrec.serving.prior). n >= 1: the user's own state, the served user model over those n events.
- popularity: global popularity (distinct users per item), the usual fallback, at every n.
- attributes_only: the attribute prior at every n, for reference.
HR@10 (one of the next 10 in the top 10) and NDCG@10 (binary relevance). The served model was trained on all
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
HORIZON = 10  # the user's next events that count as relevant


def top_hits(scores: np.ndarray, targets: set[int], seen: np.ndarray, k: int = 10) -> list[bool]:
    """Which of the top-k unseen items (ties broken by item index) are among `targets`."""
    masked = scores.astype(np.float64).copy()
    masked[seen] = -np.inf
    top = np.argsort(-masked, kind="stable")[:k]
    return [int(i) in targets for i in top]


def metrics(hits: list[list[bool]], sizes: list[int], k: int = 10) -> dict:
    """HR@k (any later item in the top k) and NDCG@k with every later item relevant."""
    discounts = 1 / np.log2(np.arange(2, k + 2))
    hr = np.mean([any(h) for h in hits])
    ndcg = np.mean([float(np.dot(h, discounts)) / discounts[: min(size, k)].sum() for h, size in zip(hits, sizes)])
    return {"hr@10": float(hr), "ndcg@10": float(ndcg), "users": len(hits)}


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

    hits: dict[str, dict[int, list[list[bool]]]] = {arm: {n: [] for n in STEPS} for arm in ("prior", "popularity", "attributes_only")}
    sizes: dict[int, list[int]] = {n: [] for n in STEPS}
    for u in tqdm(cold, desc="cold users", unit="user"):
        lo, hi = interactions.indptr[u], interactions.indptr[u + 1]
        items = interactions.items[lo:hi]
        times = interactions.timestamps[lo:hi].astype(np.float64)
        values = interactions.values[lo:hi]
        own = prior.scores(attributes.get(str(interactions.user_ids[u]), {}))
        own = own if own is not None else np.log(popularity + 1)
        for n in STEPS:
            seen = items[:n]
            targets = set(items[n : n + HORIZON].tolist()) - set(seen.tolist())
            if n == 0:
                served = own
            else:
                gaps = np.diff(times[:n], prepend=times[:1]).clip(min=0)
                embedding = runtime.embed_users(item_vectors[items[:n]][None], np.full((1, n), rating), gaps[None],
                                                values[:n][None], np.array([n]))[0]
                served = item_vectors @ embedding
            sizes[n].append(len(targets))
            hits["prior"][n].append(top_hits(served, targets, seen))
            hits["popularity"][n].append(top_hits(popularity, targets, seen))
            hits["attributes_only"][n].append(top_hits(own, targets, seen))

    results = {arm: {str(n): metrics(h, sizes[n]) for n, h in by_n.items()} for arm, by_n in hits.items()}
    lift = results["prior"]["0"]["hr@10"] / max(results["popularity"]["0"]["hr@10"], 1e-12)
    write_results("cold_users", {"ml-1m": results, "prior_over_popularity_hr@10_at_0": lift, "cold_users": len(cold),
                                 "machine": machine()})
    print(f"\n{'arm':<16}" + "".join(f"{'n=' + str(n) + ' HR/NDCG@10':>24}" for n in STEPS))
    for arm, by_n in results.items():
        print(f"{arm:<16}" + "".join(f"{by_n[str(n)]['hr@10']:>13.4f} /{by_n[str(n)]['ndcg@10']:>8.4f}" for n in STEPS))
    print(f"\nat 0 events the prior's HR@10 is {lift:.2f}x global popularity's (target >= 1.10)")


if __name__ == "__main__":
    main()
