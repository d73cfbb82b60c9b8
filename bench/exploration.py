"""Exploration on ML-1M partial by replay: the logged future says which shown items a user wanted.

    .venv/bin/python -m bench.exploration [--arrivals 30000] [--new-items 60] [--epsilon 0.1] [--seeds 5]
                                          [--weights 0.05,0.1,0.2,0.3,0.5] [--settle 30,60,100]

The world. Events before the 80th time percentile are the past, the rest the replayed future.
Each future event is an *arrival*: its user asks for 10 items, then does what the log says they
did (the item is consumed, so it is excluded from their later lists, as `exclude_seen` does).
The user's embedding is the served user model over everything they did before that moment, so
a greedy list moves with the user. A seeded sample of items with any future event becomes
*new*: their past is dropped and they are embedded from content alone, as the service embeds a
fresh upsert. An item shown at position p is clicked when the user looks at the slot (with
probability 1 / log2(p + 2), the examination model the service's evidence assumes; the draws are
the same for every policy) and the item is in what the user has yet to do in the log, not
clicked before. Feedback reaches the bandit as in the service: an impression of each new item
the bandit has not settled, at its position, explored or not (the service counts those itself),
and every click on a new item in a list.

The halves. Arriving users are split in two, each half with its own new items (the other half's
are kept out of its lists), so the halves share neither users nor items. Everything that is
chosen (the rank tolerance, the bandit's weight and `settle_after`) is chosen on the tuning half;
`none`, `epsilon-greedy` and `bandit` are then measured on the report half.

True rank. A new item's interest is the share of the half's users whose logged future holds it;
its true rank is its place among the half's new items by interest, a range where items tie. The
estimate is the service's own posterior-mean CTR (the default bandit's model: content fit plus
the item's evidence), the same estimator for every policy, ties again a range. An item has
reached its true rank at the first checkpoint (every 1% of the half) from which every rank its
estimate allows stays within `tolerance` of every rank the truth allows; "impressions to true
rank" counts all impressions served by then (censored at the end of the half). The tolerance is
what the truth itself can resolve: the smallest t at which the median new item's true rank,
recomputed on bootstrap resamples of the tuning half's users, stays within t of the sample's in
at least half the resamples.

The policies share the greedy list (user embedding x item embedding, the top 10):
- none: the greedy list;
- epsilon-greedy: each slot, with probability `--epsilon`, shows a uniformly random new item;
- bandit: the service's exploration (dynrec.ranking.bandit: ClickBandit.fit and .choose,
  exploration_slots, place), over the `pool` new items most relevant to the user, as
  dynrec.ranking.ranker.explore runs it.

Each policy is replayed with `--seeds` seeds (none needs one); figures are medians over seeds.
The weight and `settle_after` of the bandit are the sweep's point with the greatest speed-up
among those that keep at least 96% of none's clicks (a point under the 95% target, for the other
half's noise) and beat epsilon-greedy on both counts, on the tuning half.

Writes bench/results/exploration.json ({policy, none, epsilon-greedy, bandit, tuning, settings})
and exploration.png (clicks against speed-up over the sweep), and prints a table.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics

import numpy as np
import pyarrow.parquet as pq

from bench.common import RESULTS_DIR, machine, write_results
from dynrec.artifacts.prepare import ensure_artifacts, vectors
from dynrec.config import DynrecConfig, ExplorationConfig
from dynrec.data import Interactions, load_source
from dynrec.encoders.behaviour import BehaviourFeatures
from dynrec.items.feedback import FeedbackCounts, examined
from dynrec.models.model import load_model
from dynrec.models.runtime import ModelRuntime
from dynrec.ranking.bandit import ClickBandit, exploration_slots, place

K = 10
LOOKED_AT = np.array([examined(p) for p in range(K)])
KEEP_AT_LEAST = 0.96  # the share of none's clicks a chosen setting keeps on the tuning half


class World:
    """The replay: arrivals in time order, each with its user's embedding at that moment, the two
    halves' users and new items, and the items' embeddings."""

    def __init__(self, config: DynrecConfig, arrivals: int, n_new: int, seed: int):
        inter = Interactions.from_dataset(load_source(config))
        users = inter.user_of_event()
        cut = np.quantile(inter.timestamps, 0.8)
        future = inter.timestamps >= cut
        rng = np.random.default_rng(seed)
        has_future = np.zeros(inter.n_items, bool)
        has_future[inter.items[future]] = True
        new = rng.choice(np.flatnonzero(has_future), 2 * n_new, replace=False)
        self.new = [np.sort(new[:n_new]), np.sort(new[n_new:])]
        is_new = np.zeros(inter.n_items, bool)
        is_new[new] = True
        past = ~future & ~is_new[inter.items]
        has_past = np.zeros(inter.n_users, bool)
        has_past[users[past]] = True
        order = np.flatnonzero(future)
        order = order[np.argsort(inter.timestamps[order], kind="stable")]
        order = order[has_past[users[order]]][:arrivals]
        self.user, self.item = users[order], inter.items[order].astype(np.int64)
        self.half = self._split_users(rng, inter.n_users)
        self.past = {int(u): set(inter.items[inter.indptr[u] + np.flatnonzero(past[inter.indptr[u]:inter.indptr[u + 1]])].tolist())
                     for u in np.unique(self.user)}

        artifacts = ensure_artifacts(config, progress=True)
        model, _, _ = load_model(artifacts.model_path)
        runtime = ModelRuntime(model, config.runtime)
        table = pq.read_table(artifacts.embeddings_path)
        position = {item_id: r for r, item_id in enumerate(table["item_id"].to_pylist())}
        missing = [i for i in inter.item_ids if i not in position]
        if missing:
            raise SystemExit(f"{artifacts.embeddings_path} lacks {len(missing):,} of the {len(inter.item_ids):,} ML-1M items "
                             f"(e.g. {missing[0]}): run against a home whose store holds the imported catalogue "
                             "(`dynrec import`, or the quickstart's home) and a trained model")
        rows = [position[i] for i in inter.item_ids]
        self.item_vectors = vectors(table["embedding"])[rows]
        text, image = vectors(table["text_embedding"])[rows], vectors(table["image_embedding"])[rows]
        text_mask = np.asarray(table["text_mask"].to_pylist(), bool)[rows]
        image_mask = np.asarray(table["image_mask"].to_pylist(), bool)[rows]
        unseen = BehaviourFeatures(1, config=config.behaviour).item_features(0, int(cut))
        self.item_vectors[new] = runtime.embed_items(np.full(len(new), -1), text[new], text_mask[new], image[new],
                                                     image_mask[new], np.repeat(unseen[None], len(new), axis=0))
        self.user_vectors = self._embed_arrivals(config, inter, past | future, order, runtime)

    def _split_users(self, rng: np.random.Generator, n_users: int) -> np.ndarray:
        """Each arrival's half: users in a seeded order, each to the half with fewer arrivals so far."""
        counts = np.bincount(self.user, minlength=n_users)
        half_of, sizes = np.full(n_users, -1), [0, 0]
        for u in rng.permutation(np.flatnonzero(counts)):
            half = int(sizes[1] < sizes[0])
            half_of[u] = half
            sizes[half] += counts[u]
        return half_of[self.user]

    def _embed_arrivals(self, config: DynrecConfig, inter: Interactions, kept: np.ndarray, order: np.ndarray,
                        runtime: ModelRuntime, batch: int = 256) -> np.ndarray:
        """The user model over each arriving user's newest `max_length` kept events before the arrival."""
        rating = config.model.event_types.index("rating")
        window, dim = config.model.max_length, self.item_vectors.shape[1]
        users = inter.user_of_event()
        embeddings = np.zeros((len(order), dim), np.float32)
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            items = np.zeros((len(chunk), window, dim), np.float32)
            gaps, values = np.zeros((len(chunk), window), np.float32), np.zeros((len(chunk), window), np.float32)
            lengths = np.zeros(len(chunk), np.int64)
            for b, event in enumerate(chunk):
                first = inter.indptr[users[event]]
                rows = (first + np.flatnonzero(kept[first:event]))[-window:]
                n = lengths[b] = len(rows)
                items[b, :n] = self.item_vectors[inter.items[rows]]
                times = inter.timestamps[rows].astype(np.float64)
                gaps[b, :n] = np.diff(times, prepend=times[:1]).clip(min=0)
                values[b, :n] = inter.values[rows]
            embeddings[start:start + len(chunk)] = runtime.embed_users(items, np.full(items.shape[:2], rating), gaps, values, lengths)
        return embeddings


@dataclasses.dataclass
class Half:
    """One half of the replay: its arrivals, its new items and their true interest."""

    index: int  # 0: the tuning half, 1: the report half
    arrivals: np.ndarray  # indexes into the world's arrivals, in time order
    new: np.ndarray  # its new items
    kept_out: set[int]  # the other half's new items: never shown here
    users: list[int]
    holds: np.ndarray  # (users, new items): whether the user's logged future holds the item

    @classmethod
    def of(cls, world: World, half: int) -> Half:
        arrivals = np.flatnonzero(world.half == half)
        future = collections.defaultdict(set)
        for a in arrivals:
            future[int(world.user[a])].add(int(world.item[a]))
        users = sorted(future)
        new = world.new[half]
        holds = np.array([[int(i) in future[u] for i in new] for u in users])
        return cls(half, arrivals, new, set(world.new[1 - half].tolist()), users, holds)

    @property
    def interest(self) -> np.ndarray:
        return self.holds.mean(axis=0)


def rank_ranges(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's 0-based rank, the largest first, as (lowest, highest): tied values share a range."""
    descending = -np.sort(values)[::-1]
    return np.searchsorted(descending, -values, side="left"), np.searchsorted(descending, -values, side="right") - 1


def rank_error(truth: tuple[np.ndarray, np.ndarray], estimate: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """How far, at worst, a rank the estimate allows lies from the ranks the truth allows."""
    return np.maximum(truth[0] - estimate[0], estimate[1] - truth[1]).clip(min=0)


def truth_tolerance(half: Half, seed: int, resamples: int = 200) -> tuple[int, list[float]]:
    """The smallest tolerance within which the median new item's true rank, on bootstrap
    resamples of the half's users, stays in at least half the resamples; and the share per tolerance."""
    rng = np.random.default_rng(seed)
    truth = rank_ranges(half.interest)
    errors = np.array([rank_error(truth, rank_ranges(half.holds[rng.integers(0, len(half.users), len(half.users))].mean(axis=0)))
                       for _ in range(resamples)])
    shares = [float(np.median((errors <= t).mean(axis=0))) for t in range(len(half.new))]
    return next(t for t, share in enumerate(shares) if share >= 0.5), shares[:16]


def replay(world: World, half: Half, policy: str, exploration: ExplorationConfig, epsilon: float, tolerance: int,
           seed: int) -> dict:
    """One run of a policy over a half: clicks, and when each new item reached its true rank."""
    rng = np.random.default_rng(seed)
    looks = np.random.default_rng([half.index, 7]).random((len(half.arrivals), K))  # the same for every policy
    feedback = FeedbackCounts()
    bandit = ClickBandit(exploration, feedback)
    new_ids = [str(i) for i in half.new]
    new_rows = {str(i): int(i) for i in half.new}
    is_new = set(new_ids)

    def vectors_of(ids: list[str]) -> np.ndarray:
        return world.item_vectors[[new_rows[i] for i in ids]]

    new_vectors = vectors_of(new_ids)
    to_do = collections.defaultdict(collections.Counter)  # what each user has yet to do in the log
    for a in half.arrivals:
        to_do[int(world.user[a])][int(world.item[a])] += 1
    blocked = {u: world.past[u] | half.kept_out for u in to_do}
    truth = rank_ranges(half.interest)
    clicks = impressions = explored = 0
    every = max(1, len(half.arrivals) // 100)
    trace_impressions, trace_error = [], []
    for step, a in enumerate(half.arrivals):
        u = int(world.user[a])
        scores = world.item_vectors @ world.user_vectors[a]
        scores[list(blocked[u])] = -np.inf
        top = np.argpartition(-scores, 2 * K)[: 2 * K]
        greedy = [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]
        shown = [(i, False) for i in greedy[:K]]
        if policy == "epsilon-greedy":
            for slot in range(K):
                if rng.random() < epsilon:
                    taken = {i for i, _ in shown}
                    open_new = [i for i in half.new if i not in blocked[u] and i not in taken]
                    if open_new:
                        shown[slot] = (int(rng.choice(open_new)), True)
        elif policy == "bandit":
            slots = exploration_slots(K, exploration.weight, rng)
            if slots:
                young = [i for i in half.new if i not in blocked[u]]
                young = sorted(young, key=lambda i: -scores[i])[: exploration.pool]
                young_ids = [str(i) for i in young]
                rows, _ = bandit.choose(young_ids, vectors_of(young_ids), slots, bandit.fit(new_ids, vectors_of), rng)
                picks = [young[r] for r in rows]
                ranked = [(i, False) for i in greedy if i not in picks][:K]
                shown = place(ranked, [(i, True) for i in picks], K, rng)
        for position, (item, flagged) in enumerate(shown):
            impressions += 1
            explored += flagged
            if flagged or (str(item) in is_new and bandit.unsettled([str(item)])[0]):
                feedback.record(str(item), "impression", position)
            if looks[step, position] < LOOKED_AT[position] and to_do[u][item] > 0 and item not in blocked[u]:
                clicks += 1
                blocked[u].add(item)
                if str(item) in is_new:
                    feedback.record(str(item), "click", position)
        consumed = int(world.item[a])
        to_do[u][consumed] -= 1
        blocked[u].add(consumed)
        if (step + 1) % every == 0 or step + 1 == len(half.arrivals):
            estimate = bandit.means(new_ids, new_vectors, bandit.fit(new_ids, vectors_of))
            trace_impressions.append(impressions)
            trace_error.append(rank_error(truth, rank_ranges(estimate)))
    within = np.array(trace_error) <= tolerance  # (checkpoints, new items)
    reached = []
    for item in range(within.shape[1]):
        misses = np.flatnonzero(~within[:, item])
        first = 0 if len(misses) == 0 else misses[-1] + 1  # from here on it stays within tolerance
        reached.append(trace_impressions[first] if first < len(trace_impressions) else impressions)
    shown_new = [feedback.impressions.get(i, 0) for i in new_ids]
    return {
        "clicks": clicks,
        "impressions": impressions,
        "impressions_to_true_rank": float(statistics.median(reached)),
        "new_items_reaching_true_rank": int(sum(r < impressions for r in reached)),
        "explored_impressions": explored,
        "median_impressions_per_new_item": float(statistics.median(shown_new)),
    }


def measured(runs: list[dict], none: dict | None) -> dict:
    """Medians over seeds, against none's (a policy is its own reference when `none` is None)."""
    result = {key: float(statistics.median(r[key] for r in runs)) for key in runs[0]}
    reference = none or result
    result["clicks_vs_none"] = result["clicks"] / max(reference["clicks"], 1)
    result["click_loss_vs_none"] = 1 - result["clicks_vs_none"]
    result["speedup_to_true_rank"] = reference["impressions_to_true_rank"] / max(result["impressions_to_true_rank"], 1)
    result["seeds"] = len(runs)
    result["clicks_by_seed"] = [r["clicks"] for r in runs]  # the spread the medians come from
    result["impressions_to_true_rank_by_seed"] = [r["impressions_to_true_rank"] for r in runs]
    return result


def run(world: World, half: Half, policy: str, exploration: ExplorationConfig, args, tolerance: int,
        none: dict | None = None) -> dict:
    seeds = [0] if policy == "none" else range(args.seeds)
    return measured([replay(world, half, policy, exploration, args.epsilon, tolerance, 1000 + s) for s in seeds], none)


def choose(sweep: dict[str, dict], epsilon: dict) -> tuple[str, str]:
    """The sweep point to serve, and the rule that picked it (module docstring)."""
    beating = {key: r for key, r in sweep.items() if r["clicks_vs_none"] >= KEEP_AT_LEAST
               and r["clicks"] > epsilon["clicks"] and r["speedup_to_true_rank"] > epsilon["speedup_to_true_rank"]}
    if beating:
        return max(beating, key=lambda key: beating[key]["speedup_to_true_rank"]), "fastest that keeps >= 96% of clicks and beats epsilon-greedy on both"
    keeping = {key: r for key, r in sweep.items() if r["clicks_vs_none"] >= KEEP_AT_LEAST}
    pool = keeping or sweep
    return max(pool, key=lambda key: pool[key]["speedup_to_true_rank"]), "none beats epsilon-greedy on both: fastest that keeps >= 96% of clicks"


def plot(sweep: dict[str, dict], epsilon: dict, report: dict[str, dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_settle = collections.defaultdict(list)
    for r in sweep.values():
        by_settle[r["settle_after"]].append(r)
    for settle, points in sorted(by_settle.items()):
        points.sort(key=lambda r: r["weight"])
        ax.plot([r["speedup_to_true_rank"] for r in points], [r["clicks_vs_none"] for r in points], "o-",
                label=f"bandit, settle_after {settle:g} (tuning half)")
        for r in points:
            ax.annotate(f"{r['weight']:g}", (r["speedup_to_true_rank"], r["clicks_vs_none"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.plot(epsilon["speedup_to_true_rank"], epsilon["clicks_vs_none"], "kx", ms=9, label="epsilon-greedy (tuning half)")
    for name, marker in (("epsilon-greedy", "ks"), ("bandit", "r*")):
        ax.plot(report[name]["speedup_to_true_rank"], report[name]["clicks_vs_none"], marker, ms=11, mfc="none" if name != "bandit" else "r",
                label=f"{name} (report half)")
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.axvline(2.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("speed-up to the new items' true rank, against no exploration (median item)")
    ax.set_ylabel("clicks against no exploration")
    ax.set_title("Exploration on the ML-1M replay (labels: weight)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arrivals", type=int, default=30000)
    parser.add_argument("--new-items", type=int, default=60, help="new items per half")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=5, help="replays per policy and setting")
    parser.add_argument("--seed", type=int, default=0, help="the world's: new items and halves")
    parser.add_argument("--weights", default="0.05,0.1,0.2,0.3,0.5", help="the bandit's weights swept on the tuning half")
    parser.add_argument("--settle", default="30,60,100", help="its settle_after values swept on the tuning half")
    args = parser.parse_args()
    config = DynrecConfig()
    world = World(config, args.arrivals, args.new_items, args.seed)
    tuning, report = Half.of(world, 0), Half.of(world, 1)

    tolerance, tolerance_shares = truth_tolerance(tuning, args.seed)
    none = run(world, tuning, "none", config.exploration, args, tolerance)
    epsilon = run(world, tuning, "epsilon-greedy", config.exploration, args, tolerance, none)
    sweep = {}
    for settle in map(float, args.settle.split(",")):
        for weight in map(float, args.weights.split(",")):
            exploration = dataclasses.replace(config.exploration, weight=weight, settle_after=settle)
            sweep[f"weight={weight:g},settle_after={settle:g}"] = {
                "weight": weight, "settle_after": settle, **run(world, tuning, "bandit", exploration, args, tolerance, none)}
            print(f"tuning {weight:g}/{settle:g}: clicks {sweep[next(reversed(sweep))]['clicks_vs_none']:.3f} "
                  f"speed-up {sweep[next(reversed(sweep))]['speedup_to_true_rank']:.2f}", flush=True)
    chosen, rule = choose(sweep, epsilon)
    exploration = dataclasses.replace(config.exploration, weight=sweep[chosen]["weight"], settle_after=sweep[chosen]["settle_after"])

    results = {"none": run(world, report, "none", exploration, args, tolerance)}
    results["epsilon-greedy"] = run(world, report, "epsilon-greedy", exploration, args, tolerance, results["none"])
    results["bandit"] = run(world, report, "bandit", exploration, args, tolerance, results["none"])
    policy = (f"Thompson sampling with a content fit shared across items, explored until settled "
              f"(weight {exploration.weight:g}, settle_after {exploration.settle_after:g})")
    served = config.exploration
    write_results("exploration", {
        "policy": policy,
        **results,
        "half": "report",
        "tuning": {"tolerance": tolerance, "tolerance_rule": "median new item's true rank within t in >= half the bootstrap resamples of the tuning half's users",
                   "tolerance_share_by_t": tolerance_shares, "chosen": {"weight": exploration.weight, "settle_after": exploration.settle_after},
                   "rule": rule, "none": none, "epsilon-greedy": epsilon, "sweep": sweep},
        "config_matches_chosen": served.weight == exploration.weight and served.settle_after == exploration.settle_after,
        "settings": {**vars(args), "pool": exploration.pool, "prior_clicks": exploration.prior_clicks,
                     "prior_impressions": exploration.prior_impressions, "content_weight": exploration.content_weight,
                     "arrivals_per_half": [len(tuning.arrivals), len(report.arrivals)],
                     "users_per_half": [len(tuning.users), len(report.users)]},
        "machine": machine(),
    })
    plot(sweep, epsilon, results, RESULTS_DIR / "exploration.png")
    print(f"\ntolerance {tolerance} ranks (tuning half); chosen {chosen} ({rule})")
    print(f"report half: {len(report.arrivals)} arrivals, {len(report.users)} users, {len(report.new)} new items")
    print(f"{'policy':<16}{'clicks':>8}{'vs none':>9}{'impr. to true rank':>20}{'speed-up':>10}{'reached':>9}{'explored':>10}")
    for name, r in results.items():
        print(f"{name:<16}{r['clicks']:>8.0f}{r['clicks_vs_none']:>9.3f}{r['impressions_to_true_rank']:>20,.0f}"
              f"{r['speedup_to_true_rank']:>10.2f}{r['new_items_reaching_true_rank']:>6.0f}/{len(report.new)}{r['explored_impressions']:>10.0f}")
    print("\ntargets: bandit speed-up >= 2 and clicks vs none >= 0.95, both better than epsilon-greedy's")


if __name__ == "__main__":
    main()
