"""Cold users on ML-1M partial: how good are the first recommendations, before and after a few events?

    .venv/bin/python -m bench.cold_users [--users 600 | --folds 10]

A seeded sample of users (with at least 6 events) is made cold: their events leave the prior's
and the popularity counts. With --folds K, every eligible user is cold once instead: the users
are split into K folds and each fold is made cold in turn (a larger, less noisy estimate). For each, after its first n events (n = 0, 1, 3, 5, in time order),
the next 10 items it interacted with are relevant, and each arm's top 10 of the items not yet
seen is scored (ML-1M users rate many films in the same second, so "the next item" alone would
mostly be the tie-break's choice):
- prior: what the service does. n = 0: the attribute prior (the configured attributes, gender and
  age band; see dynrec.ranking.prior). n >= 1: the user's own state, the served user model over
  those n events, blended with the prior by the ranker's own `blended` (weight cold_start.blend / n).
- popularity: global popularity (distinct users per item), the usual fallback, at every n.
- attributes_only: the attribute prior at every n, for reference.
- early_popularity: the prior without attributes (what users reach first), to show how much of
  the prior's lift is the early-event weighting and how much the attributes.
- segment_w<weight>: the prior arm with the user's segment drawn in (dynrec.ranking.prior.with_segment)
  at each of `--segment-weights`. Segments are fitted (dynrec.segments.fit_segments, the service's
  settings) on the other users' served embeddings and attributes; a cold user is assigned by their
  attributes alone at n = 0, by their embedding and attributes after that.
HR@10 (one of the next 10 in the top 10) and NDCG@10 (binary relevance). The served model was trained on all
ML-1M partial users, so at n >= 1 it has seen these users' sequences: treat those rows as an
upper bound; the n = 0 comparison involves no trained model.

Writes bench/results/cold_users.json (cold_users_folds.json with --folds) as {"ml-1m": {arm: {n: {hr@10, ndcg@10}}}} and prints a table.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from bench.common import machine, write_results
from dynrec.artifacts.prepare import ensure_artifacts, vectors
from dynrec.config import DynrecConfig
from dynrec.data import Interactions, load_source
from dynrec.models.model import load_model
from dynrec.models.runtime import ModelRuntime
from dynrec.ranking.prior import (
    AttributePrior,
    PriorRanking,
    blended,
    segment_shares,
    segment_term,
    standardise,
    with_segment,
)
from dynrec.segments import UserTable, fit_segments

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
    parser.add_argument("--folds", type=int, default=0,
                        help="instead of one sample, every eligible user in this many folds, each fold cold in turn")
    parser.add_argument("--segment-weights", default="0.25,0.5,1", help="weights of the segment term to compare")
    args = parser.parse_args()
    segment_weights = [float(w) for w in args.segment_weights.split(",") if w]
    config = DynrecConfig()
    dataset = load_source(config)
    interactions = Interactions.from_dataset(dataset)
    rng = np.random.default_rng(0)
    eligible = np.flatnonzero(interactions.lengths >= max(STEPS) + 1)
    if args.folds:
        folds = np.array_split(rng.permutation(eligible), args.folds)
    else:
        folds = [rng.choice(eligible, args.users, replace=False)]
    attributes = {r["user_id"]: dict(r["attributes"] or []) for r in dataset.users.select(["user_id", "attributes"]).to_pylist()}
    users_per_item = [np.unique(interactions.sequence(u)) for u in range(interactions.n_users)]  # each item once per user
    all_popularity = np.bincount(np.concatenate(users_per_item), minlength=interactions.n_items).astype(np.float64)

    artifacts = ensure_artifacts(config, progress=True)
    model, _, _ = load_model(artifacts.model_path)
    runtime = ModelRuntime(model, config.runtime)
    table = pq.read_table(artifacts.embeddings_path)
    position = {item_id: i for i, item_id in enumerate(table["item_id"].to_pylist())}
    item_vectors = vectors(table["embedding"])[[position[i] for i in interactions.item_ids]]
    rating = config.model.event_types.index("rating")

    arms = ("prior", "popularity", "attributes_only", "early_popularity", *(f"segment_w{w:g}" for w in segment_weights))
    hits: dict[str, dict[int, list[list[bool]]]] = {arm: {n: [] for n in STEPS} for arm in arms}
    max_length = config.model.max_length

    def embed(users: list[int], lengths: list[int]) -> np.ndarray:
        """Served embeddings of each user's first `lengths` events (at most the last max_length)."""
        out = []
        for start in range(0, len(users), 64):
            batch = list(zip(users[start : start + 64], lengths[start : start + 64]))
            width = max(min(n, max_length) for _, n in batch)
            items = np.zeros((len(batch), width, item_vectors.shape[1]), np.float32)
            gaps, values = np.zeros((len(batch), width), np.float32), np.zeros((len(batch), width), np.float32)
            sizes_ = np.zeros(len(batch), np.int64)
            for r, (u, n) in enumerate(batch):
                lo = interactions.indptr[u] + max(0, n - max_length)
                hi = interactions.indptr[u] + n
                times = interactions.timestamps[lo:hi].astype(np.float64)
                m = hi - lo
                items[r, :m] = item_vectors[interactions.items[lo:hi]]
                gaps[r, :m] = np.diff(times, prepend=times[:1]).clip(min=0)
                values[r, :m], sizes_[r] = interactions.values[lo:hi], m
            out.append(runtime.embed_users(items, np.full(items.shape[:2], rating), gaps, values, sizes_))
        return np.concatenate(out)
    sizes: dict[int, list[int]] = {n: [] for n in STEPS}
    progress = tqdm(total=sum(len(f) for f in folds), desc="cold users", unit="user")
    for cold in folds:
        prior = AttributePrior.fit(dataset.users, interactions, config.cold_start,
                                   exclude_users={str(interactions.user_ids[u]) for u in cold})
        popularity = all_popularity - np.bincount(np.concatenate([users_per_item[u] for u in cold]), minlength=interactions.n_items)
        early = prior.scores({})
        cold_set = set(cold.tolist())
        warm = [u for u in range(interactions.n_users) if u not in cold_set]
        table = UserTable([str(interactions.user_ids[u]) for u in warm], embed(warm, [int(interactions.lengths[u]) for u in warm]),
                          [attributes.get(str(interactions.user_ids[u]), {}) for u in warm],
                          [[str(interactions.item_ids[i]) for i in interactions.sequence(u)[-50:]] for u in warm])
        segmentation = fit_segments(table, {}, config.segments)
        rows = {str(item_id): r for r, item_id in enumerate(interactions.item_ids)}
        terms = [segment_term(segment_shares(segmentation.basis(s)[1], rows, interactions.n_items)) for s in range(segmentation.k)]
        for u in cold:
            lo, hi = interactions.indptr[u], interactions.indptr[u + 1]
            items = interactions.items[lo:hi]
            times = interactions.timestamps[lo:hi].astype(np.float64)
            values = interactions.values[lo:hi]
            user_attributes = attributes.get(str(interactions.user_ids[u]), {})
            own = prior.scores(user_attributes)
            own_ranking = PriorRanking(own, standardise(own, own), np.argsort(-own, kind="stable"))
            for n in STEPS:
                seen = items[:n]
                targets = set(items[n : n + HORIZON].tolist()) - set(seen.tolist())
                embedding = None
                if n == 0:
                    served = own
                else:
                    gaps = np.diff(times[:n], prepend=times[:1]).clip(min=0)
                    embedding = runtime.embed_users(item_vectors[items[:n]][None], np.full((1, n), rating), gaps[None],
                                                    values[:n][None], np.array([n]))[0]
                    model_scores = item_vectors @ embedding
                    served = blended(model_scores, model_scores, standardise(own, own), n, config.cold_start)
                segment = segmentation.assign(embedding, user_attributes)
                for w in segment_weights:
                    drawn = with_segment(own_ranking, terms[segment], w).standardised
                    hits[f"segment_w{w:g}"][n].append(top_hits(
                        drawn if n == 0 else blended(model_scores, model_scores, drawn, n, config.cold_start), targets, seen))
                sizes[n].append(len(targets))
                hits["prior"][n].append(top_hits(served, targets, seen))
                hits["popularity"][n].append(top_hits(popularity, targets, seen))
                hits["attributes_only"][n].append(top_hits(own, targets, seen))
                hits["early_popularity"][n].append(top_hits(early, targets, seen))
            progress.update()
    progress.close()

    results = {arm: {str(n): metrics(h, sizes[n]) for n, h in by_n.items()} for arm, by_n in hits.items()}
    lift = results["prior"]["0"]["hr@10"] / max(results["popularity"]["0"]["hr@10"], 1e-12)
    write_results("cold_users_folds" if args.folds else "cold_users", {"ml-1m": results, "prior_over_popularity_hr@10_at_0": lift,
                                 "cold_users": sum(len(f) for f in folds), "folds": args.folds,
                                 "machine": machine()})
    print(f"\n{'arm':<18}" + "".join(f"{'n=' + str(n) + ' HR/NDCG@10':>24}" for n in STEPS))
    for arm, by_n in results.items():
        print(f"{arm:<18}" + "".join(f"{by_n[str(n)]['hr@10']:>13.4f} /{by_n[str(n)]['ndcg@10']:>8.4f}" for n in STEPS))
    print(f"\nat 0 events the prior's HR@10 is {lift:.2f}x global popularity's (target >= 1.10)")


if __name__ == "__main__":
    main()
