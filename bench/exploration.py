"""Exploration on ML-1M partial by replay: the logged future says which shown items a user wanted.

    .venv/bin/python -m bench.exploration [--arrivals 30000] [--new-items 60] [--draws 5] [--seeds 2]
                                          [--epsilon 0.1] [--weights 0.1,0.3] [--settle 30,60,100]
                                          [--pools 20,50]

The world. Events before the 80th time percentile are the past, the rest the replayed future.
Each future event is an *arrival*: its user asks for 10 items, then does what the log says they
did (the item is consumed, so it is excluded from their later lists, as `exclude_seen` does).
The user's embedding is the served user model over everything they did before that moment, so
a greedy list moves with the user. A seeded draw of items with any future event becomes
*new*: their past is dropped and they are embedded from content alone, as the service embeds a
fresh upsert. An item shown at position p is clicked when the user looks at the slot (with
probability 1 / log2(p + 2), the examination model the service's evidence assumes; the draws are
the same for every policy) and the item is in what the user has yet to do in the log, not
clicked before. Feedback reaches the bandit as in the service: an impression of each new item
the bandit has not settled, at its position, explored or not (the service counts those itself),
and every click on a new item in a list.

The halves and the draws. Arriving users are split in two, and the items with a future into two
pools; each half draws its new items from its own pool (the other half's are kept out of its
lists), so the halves share neither users nor items. Which 60 items are new moves a half's
figures more than any setting does (one draw's halves gave the same bandit 5.6x and 2.0x), so
there are `--draws` draws of new items, each with both halves; the user split and the pools stay.
Everything that is chosen (the rank tolerance, the bandit's weight, `settle_after` and `pool`) is
chosen on the tuning halves; `none`, `epsilon-greedy` and `bandit` are then measured on the
report halves.

True rank. A new item's interest is the share of the half's users whose logged future holds it;
its true rank is its place among the half's new items by interest, a range where items tie. The
estimate is the service's own posterior-mean CTR (the default bandit's model: content fit plus
the item's evidence), the same estimator for every policy, ties again a range. An item has
reached its true rank at the first checkpoint (every 1% of the half) from which every rank its
estimate allows stays within `tolerance` of every rank the truth allows; "impressions to true
rank" counts all impressions served by then (censored at the end of the half). The tolerance is
what the truth itself can resolve: the smallest t at which the median new item's true rank,
recomputed on bootstrap resamples of the tuning half's users, stays within t of the sample's in
at least half the resamples (the median of that t over the draws).

The policies share the greedy list (user embedding x item embedding, the top 10):
- none: the greedy list;
- epsilon-greedy: each slot, with probability `--epsilon`, shows a uniformly random new item;
- bandit: the service's exploration (dynrec.ranking.bandit: ClickBandit.fit and .choose,
  exploration_slots, place), over the `pool` new items most relevant to the user, as
  dynrec.ranking.ranker.explore runs it.

Each policy is replayed with `--seeds` seeds per draw (none needs one). A draw's figures are
medians over its seeds, each ratio against the same draw's none; the figures reported are medians
over draws. The weight, `settle_after` and `pool` of the bandit are the sweep's point with the
greatest speed-up among those that keep at least 96% of none's clicks (a point under the 95%
target, for the other half's noise) and beat epsilon-greedy on both counts, on the tuning halves.

Writes bench/results/exploration.json ({policy, none, epsilon-greedy, bandit, tuning, settings})
and exploration.png (clicks against speed-up over the sweep), and prints a table.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import statistics

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

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
    """The replay's fixed parts: the log cut into past and future, each user's half, the two pools
    the halves' new items are drawn from, and the served models. A draw (`draw`) picks new items."""

    def __init__(self, config: DynrecConfig, arrivals: int, seed: int):
        self.config, self.arrivals, self.seed = config, arrivals, seed
        self.inter = inter = Interactions.from_dataset(load_source(config))
        self.users = inter.user_of_event()
        self.cut = np.quantile(inter.timestamps, 0.8)
        self.future = inter.timestamps >= self.cut
        rng = np.random.default_rng(seed)
        has_future = np.zeros(inter.n_items, bool)
        has_future[inter.items[self.future]] = True
        candidates = rng.permutation(np.flatnonzero(has_future))
        self.pools = [candidates[0::2], candidates[1::2]]  # half h's new items come from pools[h] only
        has_past = np.zeros(inter.n_users, bool)
        has_past[self.users[~self.future]] = True
        order = np.flatnonzero(self.future)
        self.future_order = order = order[np.argsort(inter.timestamps[order], kind="stable")]
        order = order[has_past[self.users[order]]][:arrivals]  # a draw drops the few whose past was all new items
        self.half_of = self._split_users(rng, np.bincount(self.users[order], minlength=inter.n_users))

        artifacts = ensure_artifacts(config, progress=True)
        model, _, _ = load_model(artifacts.model_path)
        self.runtime = ModelRuntime(model, config.runtime)
        table = pq.read_table(artifacts.embeddings_path)
        position = {item_id: r for r, item_id in enumerate(table["item_id"].to_pylist())}
        missing = [i for i in inter.item_ids if i not in position]
        if missing:
            raise SystemExit(f"{artifacts.embeddings_path} lacks {len(missing):,} of the {len(inter.item_ids):,} ML-1M items "
                             f"(e.g. {missing[0]}): run against a home whose store holds the imported catalogue "
                             "(`dynrec import`, or the quickstart's home) and a trained model")
        rows = [position[i] for i in inter.item_ids]
        self.item_vectors = vectors(table["embedding"])[rows]
        self.content = (vectors(table["text_embedding"])[rows], np.asarray(table["text_mask"].to_pylist(), bool)[rows],
                        vectors(table["image_embedding"])[rows], np.asarray(table["image_mask"].to_pylist(), bool)[rows])

    @staticmethod
    def _split_users(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
        """Each user's half: users in a seeded order, each to the half with fewer arrivals so far."""
        half_of, sizes = np.full(len(counts), -1), [0, 0]
        for u in rng.permutation(np.flatnonzero(counts)):
            half = int(sizes[1] < sizes[0])
            half_of[u] = half
            sizes[half] += counts[u]
        return half_of

    def draw(self, index: int, n_new: int) -> Draw:
        """`n_new` new items per half, drawn from its pool: their past is dropped and they are
        embedded from content alone; the arrivals are the future events of users with a past left."""
        inter, users = self.inter, self.users
        rng = np.random.default_rng([self.seed, index])
        new = [np.sort(rng.choice(pool, n_new, replace=False)) for pool in self.pools]
        every_new = np.concatenate(new)
        is_new = np.zeros(inter.n_items, bool)
        is_new[every_new] = True
        past = ~self.future & ~is_new[inter.items]
        has_past = np.zeros(inter.n_users, bool)
        has_past[users[past]] = True
        order = self.future_order
        order = order[has_past[users[order]] & (self.half_of[users[order]] >= 0)][: self.arrivals]
        item_vectors = self.item_vectors.copy()
        text, text_mask, image, image_mask = self.content
        unseen = BehaviourFeatures(1, config=self.config.behaviour).item_features(0, int(self.cut))
        item_vectors[every_new] = self.runtime.embed_items(
            np.full(len(every_new), -1), text[every_new], text_mask[every_new], image[every_new], image_mask[every_new],
            np.repeat(unseen[None], len(every_new), axis=0))
        user = users[order]
        return Draw(
            index, new, user, inter.items[order].astype(np.int64), self.half_of[user],
            {int(u): set(inter.items[inter.indptr[u] + np.flatnonzero(past[inter.indptr[u]:inter.indptr[u + 1]])].tolist())
             for u in np.unique(user)},
            item_vectors, self._embed_arrivals(item_vectors, past | self.future, order))

    def _embed_arrivals(self, item_vectors: np.ndarray, kept: np.ndarray, order: np.ndarray, batch: int = 256) -> np.ndarray:
        """The user model over each arriving user's newest `max_length` kept events before the arrival."""
        inter, config = self.inter, self.config
        rating = config.model.event_types.index("rating")
        window, dim = config.model.max_length, item_vectors.shape[1]
        embeddings = np.zeros((len(order), dim), np.float32)
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            items = np.zeros((len(chunk), window, dim), np.float32)
            gaps, values = np.zeros((len(chunk), window), np.float32), np.zeros((len(chunk), window), np.float32)
            lengths = np.zeros(len(chunk), np.int64)
            for b, event in enumerate(chunk):
                first = inter.indptr[self.users[event]]
                rows = (first + np.flatnonzero(kept[first:event]))[-window:]
                n = lengths[b] = len(rows)
                items[b, :n] = item_vectors[inter.items[rows]]
                times = inter.timestamps[rows].astype(np.float64)
                gaps[b, :n] = np.diff(times, prepend=times[:1]).clip(min=0)
                values[b, :n] = inter.values[rows]
            embeddings[start:start + len(chunk)] = self.runtime.embed_users(items, np.full(items.shape[:2], rating), gaps, values, lengths)
        return embeddings


@dataclasses.dataclass
class Draw:
    """One draw of new items: the arrivals in time order (user, consumed item, half), what each
    user did before the future, and the item and arriving users' embeddings with these items new."""

    index: int
    new: list[np.ndarray]  # per half
    user: np.ndarray
    item: np.ndarray
    half: np.ndarray
    past: dict[int, set[int]]
    item_vectors: np.ndarray
    user_vectors: np.ndarray


@dataclasses.dataclass
class Half:
    """One half of the replay: its arrivals, its new items and their true interest."""

    index: int  # 0: the tuning half, 1: the report half
    arrivals: np.ndarray  # indexes into the draw's arrivals, in time order
    new: np.ndarray  # its new items
    kept_out: set[int]  # the other half's new items: never shown here
    users: list[int]
    holds: np.ndarray  # (users, new items): whether the user's logged future holds the item

    @classmethod
    def of(cls, draw: Draw, half: int) -> Half:
        arrivals = np.flatnonzero(draw.half == half)
        future = collections.defaultdict(set)
        for a in arrivals:
            future[int(draw.user[a])].add(int(draw.item[a]))
        users = sorted(future)
        new = draw.new[half]
        holds = np.array([[int(i) in future[u] for i in new] for u in users])
        return cls(half, arrivals, new, set(draw.new[1 - half].tolist()), users, holds)

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


def replay(draw: Draw, half: Half, policy: str, exploration: ExplorationConfig, epsilon: float, tolerance: int,
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
        return draw.item_vectors[[new_rows[i] for i in ids]]

    new_vectors = vectors_of(new_ids)
    to_do = collections.defaultdict(collections.Counter)  # what each user has yet to do in the log
    for a in half.arrivals:
        to_do[int(draw.user[a])][int(draw.item[a])] += 1
    blocked = {u: draw.past[u] | half.kept_out for u in to_do}
    truth = rank_ranges(half.interest)
    clicks = impressions = explored = 0
    every = max(1, len(half.arrivals) // 100)
    trace_impressions, trace_error = [], []
    for step, a in enumerate(half.arrivals):
        u = int(draw.user[a])
        scores = draw.item_vectors @ draw.user_vectors[a]
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
        consumed = int(draw.item[a])
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
    """One draw's medians over seeds, against none's (a policy is its own reference when `none` is None)."""
    result = {key: float(statistics.median(r[key] for r in runs)) for key in runs[0]}
    reference = none or result
    result["clicks_vs_none"] = result["clicks"] / max(reference["clicks"], 1)
    result["speedup_to_true_rank"] = reference["impressions_to_true_rank"] / max(result["impressions_to_true_rank"], 1)
    return result


def run(halves: list[tuple[Draw, Half]], policy: str, exploration: ExplorationConfig, args, tolerance: int,
        none: dict | None = None) -> dict:
    """A policy over the same half of every draw: medians over draws of each draw's medians over
    seeds, each draw against its own `none`; `by_draw` keeps the spread the medians come from."""
    seeds = [0] if policy == "none" else range(args.seeds)
    by_draw = [measured([replay(draw, half, policy, exploration, args.epsilon, tolerance, 1000 + s) for s in seeds],
                        none["by_draw"][d] if none else None) for d, (draw, half) in enumerate(halves)]
    result = {key: float(statistics.median(r[key] for r in by_draw)) for key in by_draw[0]}
    result["click_loss_vs_none"] = 1 - result["clicks_vs_none"]
    result.update(draws=len(by_draw), seeds=len(seeds), by_draw=by_draw)
    return result


def beats(policy: dict, epsilon: dict) -> bool:
    """Keeps more of none's clicks than epsilon-greedy and reaches true rank sooner."""
    return policy["clicks_vs_none"] > epsilon["clicks_vs_none"] and policy["speedup_to_true_rank"] > epsilon["speedup_to_true_rank"]


def choose(sweep: dict[str, dict], epsilon: dict) -> tuple[str, str]:
    """The sweep point to serve, and the rule that picked it (module docstring)."""
    beating = {key: r for key, r in sweep.items() if r["clicks_vs_none"] >= KEEP_AT_LEAST and beats(r, epsilon)}
    if beating:
        return max(beating, key=lambda key: beating[key]["speedup_to_true_rank"]), "fastest that keeps >= 96% of clicks and beats epsilon-greedy on both"
    keeping = {key: r for key, r in sweep.items() if r["clicks_vs_none"] >= KEEP_AT_LEAST}
    pool = keeping or sweep
    return max(pool, key=lambda key: pool[key]["speedup_to_true_rank"]), "none beats epsilon-greedy on both: fastest that keeps >= 96% of clicks"


def plot(sweep: dict[str, dict], epsilon: dict, report: dict[str, dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    lines = collections.defaultdict(list)
    for r in sweep.values():
        lines[(r["pool"], r["settle_after"])].append(r)
    for (pool, settle), points in sorted(lines.items()):
        points.sort(key=lambda r: r["weight"])
        ax.plot([r["speedup_to_true_rank"] for r in points], [r["clicks_vs_none"] for r in points], "o-", ms=4,
                label=f"bandit, pool {pool}, settle_after {settle:g} (tuning)")
        for r in points:
            ax.annotate(f"{r['weight']:g}", (r["speedup_to_true_rank"], r["clicks_vs_none"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.plot(epsilon["speedup_to_true_rank"], epsilon["clicks_vs_none"], "kx", ms=9, label="epsilon-greedy (tuning)")
    for name, marker in (("epsilon-greedy", "ks"), ("bandit", "r*")):
        ax.plot(report[name]["speedup_to_true_rank"], report[name]["clicks_vs_none"], marker, ms=11, mfc="none" if name != "bandit" else "r",
                label=f"{name} (report half)")
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.axvline(2.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("speed-up to the new items' true rank, against no exploration (median item, median draw)")
    ax.set_ylabel("clicks against no exploration (median draw)")
    ax.set_title("Exploration on the ML-1M replay (labels: weight)")
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arrivals", type=int, default=30000)
    parser.add_argument("--new-items", type=int, default=60, help="new items per half and draw")
    parser.add_argument("--draws", type=int, default=5, help="draws of new items")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=2, help="replays per policy, setting and draw")
    parser.add_argument("--seed", type=int, default=0, help="the world's: halves, item pools and draws")
    parser.add_argument("--weights", default="0.1,0.3", help="the bandit's weights swept on the tuning half")
    parser.add_argument("--settle", default="30,60,100", help="its settle_after values swept on the tuning half")
    parser.add_argument("--pools", default="20,50", help="its pool sizes swept on the tuning half")
    args = parser.parse_args()
    config = DynrecConfig()
    world = World(config, args.arrivals, args.seed)
    draws = []
    for d in tqdm(range(args.draws), desc="drawing new items and embedding the arrivals"):
        draws.append(world.draw(d, args.new_items))
    tuning, report = [(d, Half.of(d, 0)) for d in draws], [(d, Half.of(d, 1)) for d in draws]

    tolerances = [truth_tolerance(half, args.seed) for _, half in tuning]
    tolerance = int(statistics.median(t for t, _ in tolerances))
    none = run(tuning, "none", config.exploration, args, tolerance)
    epsilon = run(tuning, "epsilon-greedy", config.exploration, args, tolerance, none)
    sweep = {}
    for pool, settle, weight in itertools.product(map(int, args.pools.split(",")), map(float, args.settle.split(",")),
                                                  map(float, args.weights.split(","))):
        exploration = dataclasses.replace(config.exploration, weight=weight, settle_after=settle, pool=pool)
        point = sweep[f"weight={weight:g},settle_after={settle:g},pool={pool}"] = {
            "weight": weight, "settle_after": settle, "pool": pool, **run(tuning, "bandit", exploration, args, tolerance, none)}
        print(f"tuning weight {weight:g}, settle_after {settle:g}, pool {pool}: clicks {point['clicks_vs_none']:.3f} "
              f"speed-up {point['speedup_to_true_rank']:.2f} (epsilon-greedy {epsilon['clicks_vs_none']:.3f}, "
              f"{epsilon['speedup_to_true_rank']:.2f})", flush=True)
    chosen, rule = choose(sweep, epsilon)
    exploration = dataclasses.replace(config.exploration, weight=sweep[chosen]["weight"],
                                      settle_after=sweep[chosen]["settle_after"], pool=sweep[chosen]["pool"])

    results = {"none": run(report, "none", exploration, args, tolerance)}
    results["epsilon-greedy"] = run(report, "epsilon-greedy", exploration, args, tolerance, results["none"])
    results["bandit"] = run(report, "bandit", exploration, args, tolerance, results["none"])
    beaten_in = sum(beats(b, e) for b, e in zip(results["bandit"]["by_draw"], results["epsilon-greedy"]["by_draw"]))
    policy = (f"Thompson sampling with a content fit shared across items, explored until settled "
              f"(weight {exploration.weight:g}, settle_after {exploration.settle_after:g}, pool {exploration.pool})")
    served = config.exploration
    write_results("exploration", {
        "policy": policy,
        **results,
        "half": "report",
        "bandit_beats_epsilon_greedy_in_draws": beaten_in,
        "tuning": {"tolerance": tolerance, "tolerance_by_draw": [t for t, _ in tolerances],
                   "tolerance_rule": "median over draws of: the median new item's true rank within t in >= half the bootstrap resamples of the tuning half's users",
                   "tolerance_share_by_t": tolerances[0][1],
                   "chosen": {"weight": exploration.weight, "settle_after": exploration.settle_after, "pool": exploration.pool},
                   "rule": rule, "none": none, "epsilon-greedy": epsilon, "sweep": sweep},
        "config_matches_chosen": (served.weight, served.settle_after, served.pool) == (exploration.weight, exploration.settle_after, exploration.pool),
        "settings": {**vars(args), "prior_clicks": exploration.prior_clicks, "prior_impressions": exploration.prior_impressions,
                     "content_weight": exploration.content_weight,
                     "arrivals_per_half": [[len(h.arrivals) for _, h in halves] for halves in (tuning, report)],
                     "users_per_half": [[len(h.users) for _, h in halves] for halves in (tuning, report)]},
        "machine": machine(),
    })
    plot(sweep, epsilon, results, RESULTS_DIR / "exploration.png")
    print(f"\ntolerance {tolerance} ranks (tuning halves); chosen {chosen} ({rule})")
    print(f"report half: {args.draws} draws of {args.new_items} new items, "
          f"{int(statistics.median(len(h.arrivals) for _, h in report))} arrivals and "
          f"{int(statistics.median(len(h.users) for _, h in report))} users (medians over draws)")
    print(f"{'policy':<16}{'clicks vs none':>15}{'impr. to true rank':>20}{'speed-up':>10}{'reached':>9}{'explored':>10}"
          f"   speed-up by draw")
    for name, r in results.items():
        print(f"{name:<16}{r['clicks_vs_none']:>15.3f}{r['impressions_to_true_rank']:>20,.0f}{r['speedup_to_true_rank']:>10.2f}"
              f"{r['new_items_reaching_true_rank']:>6.0f}/{args.new_items}{r['explored_impressions']:>10.0f}   "
              + " ".join(f"{d['speedup_to_true_rank']:.2f}" for d in r["by_draw"]))
    print(f"\nbandit beats epsilon-greedy on both in {beaten_in} of {args.draws} draws")
    print("targets: bandit speed-up >= 2 and clicks vs none >= 0.95, both better than epsilon-greedy's")


if __name__ == "__main__":
    main()
