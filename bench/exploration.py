"""Exploration on ML-1M partial by replay: held-out interactions are the clicks a policy could earn.

    .venv/bin/python -m bench.exploration [--arrivals 30000] [--new-items 60] [--tolerance 6] [--weight W] [--pool P] [--sweep 0.2,0.3,0.4]

Events before the 80th time percentile are the past; the rest is the replayed future. A seeded
sample of items with future interest becomes *new*: their past events are dropped and they are
embedded from content alone (no trained ID, no behaviour), as the service embeds a fresh upsert.
Each future event is an arrival of its user, whose embedding comes from their past (the served
user model). The policy shows 10 unseen items; a shown item is clicked when it is in the user's
future and not clicked before. Every policy starts from the same relevance ranking (user
embedding x item embedding), which is what the service serves with exploration off:
- none: the top 10 by relevance;
- epsilon-greedy: each slot, with probability `--epsilon`, shows a uniformly random new item;
- bandit: the service's own exploration (dynrec.ranking.ranker.explore's rule, through
  `ClickBandit`): `weight x 10` slots go to the new items, among the `pool` most relevant, with
  the highest Thompson draws; impressions and clicks update the posteriors as they happen.

Per new item, its *true rank* is its rank among the new items by true interest (the share of
arriving users whose future holds it); its estimated rank is by posterior-mean CTR. An item has
reached its true rank at the first checkpoint (every 1% of the run) from which its estimate stays
within `--tolerance` ranks of the truth; "impressions to true rank" is the number of impressions
the whole system had served by then (censored at the end of the run for an item that never does).

Writes bench/results/exploration.json as {policy: {clicks, impressions_to_true_rank (median over
new items), ...}} and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from bench.common import machine, write_results
from dynrec.artifacts.prepare import ensure_artifacts, vectors
from dynrec.config import DynrecConfig, ExplorationConfig
from dynrec.data import Interactions, load_source
from dynrec.encoders.behaviour import BehaviourFeatures
from dynrec.items.feedback import FeedbackCounts
from dynrec.models.model import load_model
from dynrec.models.runtime import ModelRuntime
from dynrec.ranking.bandit import ClickBandit, exploration_slots

K = 10


class World:
    """The replay: past histories, the future as clicks, and everyone's embeddings."""

    def __init__(self, arrivals: int, n_new: int, seed: int):
        config = DynrecConfig()
        self.config = config
        dataset = load_source(config)
        inter = Interactions.from_dataset(dataset)
        users = np.repeat(np.arange(inter.n_users), np.diff(inter.indptr))
        cut = np.quantile(inter.timestamps, 0.8)
        past, future = inter.timestamps < cut, inter.timestamps >= cut
        rng = np.random.default_rng(seed)
        future_users_per_item = np.zeros(inter.n_items)
        pairs = np.unique(np.stack([users[future], inter.items[future]]), axis=1)
        np.add.at(future_users_per_item, pairs[1], 1)
        self.new = np.sort(rng.choice(np.flatnonzero(future_users_per_item >= 10), n_new, replace=False))
        is_new = np.zeros(inter.n_items, bool)
        is_new[self.new] = True
        past &= ~is_new[inter.items]
        self.n_items = inter.n_items
        self.future_sets: dict[int, set[int]] = {}
        for u, i in zip(*pairs):
            self.future_sets.setdefault(int(u), set()).add(int(i))
        self.past_sets = {int(u): set() for u in range(inter.n_users)}
        for u, i in zip(users[past], inter.items[past]):
            self.past_sets[int(u)].add(int(i))
        order = np.flatnonzero(future)[np.argsort(inter.timestamps[future], kind="stable")]
        order = [a for a in order if self.past_sets[int(users[a])]][:arrivals]
        self.arrivals = users[order]

        artifacts = ensure_artifacts(config, progress=True)
        model, _, _ = load_model(artifacts.model_path)
        runtime = ModelRuntime(model, config.runtime)
        table = pq.read_table(artifacts.embeddings_path)
        position = {item_id: r for r, item_id in enumerate(table["item_id"].to_pylist())}
        rows = [position[i] for i in inter.item_ids]
        self.item_vectors = vectors(table["embedding"])[rows]
        # new items: embedded from content alone, as the service embeds an upsert (no ID, no behaviour)
        text, image = vectors(table["text_embedding"])[rows], vectors(table["image_embedding"])[rows]
        text_mask = np.asarray(table["text_mask"].to_pylist(), bool)[rows]
        image_mask = np.asarray(table["image_mask"].to_pylist(), bool)[rows]
        unseen = BehaviourFeatures(1, config=config.behaviour).item_features(0, int(cut))
        fresh = runtime.embed_items(np.full(len(self.new), -1), text[self.new], text_mask[self.new], image[self.new],
                                    image_mask[self.new], np.repeat(unseen[None], len(self.new), axis=0))
        self.item_vectors[self.new] = fresh
        self.user_vectors = self._embed_users(inter, users, past, runtime)
        arrived = set(self.arrivals.tolist())
        interest = np.array([sum(i in self.future_sets.get(u, ()) for u in arrived) for i in self.new], np.float64)
        self.true_rank = rank_desc(interest / len(arrived))

    def _embed_users(self, inter, users, past, runtime) -> np.ndarray:
        rating = self.config.model.event_types.index("rating")
        max_length = self.config.model.max_length
        embeddings = np.zeros((inter.n_users, self.item_vectors.shape[1]), np.float32)
        for u in np.unique(self.arrivals):
            rows = np.flatnonzero(past[inter.indptr[u] : inter.indptr[u + 1]])[-max_length:] + inter.indptr[u]
            times = inter.timestamps[rows].astype(np.float64)
            gaps = np.diff(times, prepend=times[:1]).clip(min=0)
            embeddings[u] = runtime.embed_users(self.item_vectors[inter.items[rows]][None], np.full((1, len(rows)), rating),
                                                gaps[None], inter.values[rows][None], np.array([len(rows)]))[0]
        return embeddings


def rank_desc(values: np.ndarray) -> np.ndarray:
    """0-based rank of each value, the largest first (ties by position)."""
    ranks = np.empty(len(values), np.int64)
    ranks[np.argsort(-values, kind="stable")] = np.arange(len(values))
    return ranks


def run_policy(world: World, policy: str, exploration: ExplorationConfig, epsilon: float, tolerance: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feedback = FeedbackCounts()
    bandit = ClickBandit(exploration, feedback)
    new_ids = [str(i) for i in world.new]
    clicked: dict[int, set[int]] = {}
    clicks = impressions = explored_shown = 0
    checkpoints = max(1, len(world.arrivals) // 100)
    trace_impressions, trace_within = [], []
    for step, u in enumerate(tqdm(world.arrivals, desc=policy, unit="arrival", leave=False)):
        u = int(u)
        done = clicked.setdefault(u, set())
        blocked = world.past_sets[u] | done
        scores = world.item_vectors @ world.user_vectors[u]
        scores[list(blocked)] = -np.inf
        top = list(np.argsort(-scores)[: 4 * K])
        slate = top[:K]
        if policy == "epsilon-greedy":
            for slot in range(K):
                if rng.random() < epsilon:
                    candidates = [i for i in world.new if i not in blocked and i not in slate]
                    if candidates:
                        slate[slot] = int(rng.choice(candidates))
                        explored_shown += 1
        elif policy == "bandit":
            slots = exploration_slots(K, exploration.weight, rng)
            if slots:
                young = [i for i in world.new if i not in blocked]
                young = sorted(young, key=lambda i: -scores[i])[: exploration.pool]
                draws = bandit.sample([str(i) for i in young], rng)
                picks = [young[r] for r in np.argsort(-draws, kind="stable")[:slots]]
                rest = [i for i in slate if i not in picks]
                slate = rest[: K - len(picks)] + picks
                explored_shown += len(picks)
        for item in slate:
            impressions += 1
            feedback.record(str(item), "impression")
            if item in world.future_sets.get(u, ()) and item not in done:
                clicks += 1
                done.add(item)
                feedback.record(str(item), "click")
        if (step + 1) % checkpoints == 0 or step + 1 == len(world.arrivals):
            estimate = rank_desc(np.array([bandit.mean(i) for i in new_ids]))
            trace_impressions.append(impressions)
            trace_within.append(np.abs(estimate - world.true_rank) <= tolerance)
    within = np.array(trace_within)  # (checkpoints, new items)
    reached = []
    for item in range(within.shape[1]):
        misses = np.flatnonzero(~within[:, item])
        first = 0 if len(misses) == 0 else misses[-1] + 1  # from here on it stays within tolerance
        reached.append(trace_impressions[first] if first < len(trace_impressions) else impressions)
    new_impressions = [feedback.impressions.get(i, 0) for i in new_ids]
    return {
        "clicks": clicks,
        "impressions": impressions,
        "impressions_to_true_rank": float(statistics.median(reached)),
        "new_items_reaching_true_rank": int(sum(r < impressions for r in reached)),
        "explored_impressions": explored_shown,
        "median_impressions_per_new_item": float(statistics.median(new_impressions)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arrivals", type=int, default=30000)
    parser.add_argument("--new-items", type=int, default=60)
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--tolerance", type=int, default=6, help="ranks (among the new items) counted as reached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight", type=float, help="the bandit's exploration weight (default: the config's)")
    parser.add_argument("--pool", type=int, help="the bandit's pool of most relevant new items (default: the config's)")
    parser.add_argument("--sweep", default="", help="also run the bandit at these weights, e.g. 0.2,0.3,0.4")
    args = parser.parse_args()
    world = World(args.arrivals, args.new_items, args.seed)
    exploration = world.config.exploration
    if args.weight is not None:
        exploration = dataclasses.replace(exploration, weight=args.weight)
    if args.pool is not None:
        exploration = dataclasses.replace(exploration, pool=args.pool)
    results = {policy: run_policy(world, policy, exploration, args.epsilon, args.tolerance, args.seed)
               for policy in ("none", "epsilon-greedy", "bandit")}
    sweep = {w: run_policy(world, "bandit", dataclasses.replace(exploration, weight=float(w)), args.epsilon, args.tolerance, args.seed)
             for w in filter(None, args.sweep.split(","))}
    none = results["none"]
    for policy in [*results.values(), *sweep.values()]:
        policy["clicks_vs_none"] = policy["clicks"] / max(none["clicks"], 1)
        policy["speedup_to_true_rank"] = none["impressions_to_true_rank"] / max(policy["impressions_to_true_rank"], 1)
    if sweep:
        results["bandit_weight_sweep"] = sweep
    write_results("exploration", {**results, "settings": {**vars(args), "weight": exploration.weight, "pool": exploration.pool,
                                                          "arrivals_run": len(world.arrivals)}, "machine": machine()})
    print(f"\n{'policy':<16}{'clicks':>8}{'vs none':>9}{'impr. to true rank':>20}{'speed-up':>10}{'reached':>9}")
    for name, r in [*results.items(), *((f"bandit w={w}", r) for w, r in sweep.items())]:
        if name == "bandit_weight_sweep":
            continue
        print(f"{name:<16}{r['clicks']:>8}{r['clicks_vs_none']:>9.3f}{r['impressions_to_true_rank']:>20,.0f}"
              f"{r['speedup_to_true_rank']:>10.2f}{r['new_items_reaching_true_rank']:>6}/{len(world.new)}")
    print("\ntargets: bandit speed-up >= 2, bandit clicks vs none >= 0.95")


if __name__ == "__main__":
    main()
