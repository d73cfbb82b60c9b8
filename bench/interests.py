"""Several interests per user against the single user embedding, on ML-1M, in one run.

    DYNREC_HOME=<a home that has served ML-1M> .venv/bin/python -m bench.interests [--users 3000]

In-process on the served model and catalogue, on the DESIGN.md protocol's split. For each of
`--users` users (a seeded sample of those with more than `cold_start.blend_max_events` events
before their validation item, so the prior is out of their ranking), the validation case's target
is the second newest event and the test case's the newest. The user is embedded from their window
before the target, their interests come from their whole liked history before it
(dynrec.users.interests.interests_of, as a shard's start-up builds them), and every item of that
history is excluded.

- single: the user embedding alone. Candidates: the index's top 50 (the Ranker's `retrieve`);
  ranking: the Ranker's `recommend` (exploration, new-item slots and diversity off).
- multi: the same two calls with the interests in the view (what `interests.retrieval` puts
  there). Candidates: `with_interests`' 50, the embedding's top 50 - r and r retrieved along the
  interests; ranking: both states scored over the `serving.candidates` retrieved that way.

Metrics: recall@50 of the candidates (the target among them), NDCG@10 of the ranking, and the
intra-list diversity of the top 10 (dynrec.eval.metrics: mean pairwise cosine distance of the
items' vectors). `interests.candidate_share` and `interests.weight` are chosen on the validation
cases (by NDCG@10, then recall@50) from `--shares` x `--weights`; the test cases report single
and that setting (as "multi"), and every setting of the grid beside them.

Writes bench/results/interests.json and interests.png (NDCG@10 against diversity, each setting),
and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import deque
from itertools import islice

import numpy as np
from tqdm import tqdm

from bench.common import RESULTS_DIR, machine, write_results
from deployments.common import load_served
from dynrec.data import Interactions
from dynrec.data.schemas import NOT_INTERACTIONS
from dynrec.eval import metrics
from dynrec.ranking.bandit import ExplorationSettings
from dynrec.ranking.ranker import Filters, recommend, retrieve
from dynrec.state import open_store
from dynrec.state.imports import stored_dataset
from dynrec.users.interests import interests_of
from dynrec.users.sessions import UserRecord, UserSessions
from dynrec.users.shards import UserView

CANDIDATES = 50  # recall@50


@dataclasses.dataclass
class Case:
    single: UserView  # the embedding alone
    multi: UserView  # the embedding and the interests
    target: str


def cases(sessions: UserSessions, users: int, seed: int = 0) -> dict[str, list[Case]]:
    """The validation and test cases of `users` sampled users (module docstring)."""
    config = sessions.config
    dataset, _ = stored_dataset(sessions.store, config.source.label)
    interactions = Interactions.from_dataset(dataset, exclude_types=NOT_INTERACTIONS)
    names = interactions.event_type_names
    eligible = np.flatnonzero(interactions.lengths > config.cold_start.blend_max_events + 2)
    chosen = np.sort(np.random.default_rng(seed).choice(eligible, min(users, len(eligible)), replace=False))
    found: dict[str, list[Case]] = {}
    for split, held_out in (("validation", 2), ("test", 1)):
        rows = []
        for u in chosen:
            lo, hi = interactions.indptr[u], interactions.indptr[u + 1]
            history = [(interactions.item_ids[interactions.items[at]], names[interactions.event_types[at]],
                        int(interactions.timestamps[at]), float(interactions.values[at])) for at in range(lo, hi)]
            rows.append((str(interactions.user_ids[u]), history[: len(history) - held_out], history[len(history) - held_out][0]))
        found[split] = []
        for start in tqdm(range(0, len(rows), 32), desc=f"{split} users"):
            batch = rows[start : start + 32]
            records = [UserRecord(u, deque(h, maxlen=sessions.max_length), {e[0] for e in h}) for u, h, _ in batch]
            _, *inputs = sessions._batch(records, sessions.catalog)
            for record, (_, history, target), embedding in zip(records, batch, sessions.catalog.runtime.embed_users(*inputs)):
                recent = list(islice(reversed(record.history), config.serving.reason_history))
                single = UserView(record.user_id, embedding, record.seen, recent, {}, len(record.history),
                                  sessions.catalog.model_version)
                interests = interests_of(sessions.space, history, config.interests)
                multi = dataclasses.replace(single, interests=interests.directions(),
                                            interest_shares=interests.shares(config.interests))
                found[split].append(Case(single, multi, target))
    return found


def measure(catalog, views: list[UserView], targets: list[str]) -> dict:
    """recall@50 of the candidates, NDCG@10 and ILD@10 of the ranking, and the per-user NDCG@10
    (for paired comparisons), over `views` with their `targets`."""
    no_exploration = ExplorationSettings(0.0, 1.0, 1)
    found, ranks, diversity, took = [], [], [], []
    for view, target in zip(views, targets):
        candidates, _ = retrieve(catalog, view, CANDIDATES, view.seen, None)
        found.append(target in candidates)
        started = time.perf_counter()
        ranked = [r.item_id for r in recommend(catalog, view, 10, Filters(), True, catalog.config.serving.candidates, 0.0,
                                               new_item_slots=0, exploration=no_exploration)]
        took.append(time.perf_counter() - started)
        ranks.append(ranked.index(target) if target in ranked else len(ranked))
        diversity.append(metrics.intra_list_diversity(np.arange(len(ranked))[None, :], catalog.vectors(ranked)))
    ranks = np.array(ranks)
    return {"recall@50": float(np.mean(found)), "ndcg@10": metrics.ndcg(ranks, 10), "ild@10": float(np.mean(diversity)),
            "recommend_p50_ms": 1000 * float(np.median(took)),
            "per_user_ndcg": np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)}


def with_settings(catalog, share: float, weight: float):
    catalog.config.interests.candidate_share, catalog.config.interests.weight = share, weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3000, help="3000: every eligible ML-1M user")
    parser.add_argument("--shares", default="0.1,0.2", help="interests.candidate_share values tried on validation")
    parser.add_argument("--weights", default="0,0.05,0.1,0.2,0.3", help="interests.weight values tried on validation")
    args = parser.parse_args()
    served = load_served(threads=2)
    catalog = served.catalog(open_store(served.config))
    sessions = UserSessions(served.config, catalog)
    split_cases = cases(sessions, args.users)
    grid = [(float(s), float(w)) for s in args.shares.split(",") for w in args.weights.split(",")]
    results: dict[str, dict] = {}
    for split, found in split_cases.items():
        targets = [c.target for c in found]
        results[split] = {"single": measure(catalog, [c.single for c in found], targets)}
        for share, weight in tqdm(grid, desc=f"{split} settings"):
            with_settings(catalog, share, weight)
            results[split][(share, weight)] = measure(catalog, [c.multi for c in found], targets)
    validation = results["validation"]
    chosen = max(grid, key=lambda sw: (validation[sw]["ndcg@10"], validation[sw]["recall@50"]))
    test = results["test"]
    difference = test[chosen]["per_user_ndcg"] - test["single"]["per_user_ndcg"]

    def public(row: dict) -> dict:
        return {k: v for k, v in row.items() if k != "per_user_ndcg"}

    def rows(split: dict) -> list[dict]:
        return [{"candidate_share": s, "weight": w, **public(split[(s, w)])} for s, w in grid]

    # the interest model's settings, with the ranking's chosen ones (`retrieval` is what "multi" turns on)
    settings = {k: v for k, v in dataclasses.asdict(served.config.interests).items() if k != "retrieval"}
    settings |= {"candidate_share": chosen[0], "weight": chosen[1]}
    output = {
        "single": public(test["single"]), "multi": public(test[chosen]),
        "multi_vs_single": {m: test[chosen][m] / test["single"][m] for m in ("recall@50", "ndcg@10", "ild@10")},
        # the paired NDCG@10 difference's standard error: what the test figures' noise is
        "ndcg@10_difference_se": float(difference.std(ddof=1) / np.sqrt(len(difference))),
        "settings": settings, "chosen_on": "validation NDCG@10 (then recall@50)", "users": len(split_cases["test"]),
        "split": "DESIGN.md leave-one-out: validation = second newest event, test = newest",
        "validation": {"single": public(validation["single"]), "grid": rows(validation)}, "test_grid": rows(test),
        "model_version": catalog.model_version, "machine": machine(),
    }
    path = write_results("interests", output)
    plot(output)
    print(f"\nchosen on validation: candidate_share {chosen[0]:g}, weight {chosen[1]:g}; test, {output['users']} users:")
    print(f"{'':>8} {'recall@50':>10} {'NDCG@10':>8} {'ILD@10':>7}")
    for name in ("single", "multi"):
        row = output[name]
        print(f"{name:>8} {row['recall@50']:>10.4f} {row['ndcg@10']:>8.4f} {row['ild@10']:>7.4f}")
    ratio = output["multi_vs_single"]
    print(f"{'ratio':>8} {ratio['recall@50']:>10.3f} {ratio['ndcg@10']:>8.3f} {ratio['ild@10']:>7.3f}"
          f"   (NDCG@10 paired difference SE {output['ndcg@10_difference_se']:.4f})")
    print(f"\nwrote {path}")


def plot(output: dict) -> None:
    """Test figures: recall@50 against the candidates' interest share (0: single), and NDCG@10 and
    diversity against the interests' weight in the ranking (0: the embedding's order), at the
    chosen share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid, single, settings = output["test_grid"], output["single"], output["settings"]
    shares = sorted({r["candidate_share"] for r in grid})
    at_share = sorted((r for r in grid if r["candidate_share"] == settings["candidate_share"]), key=lambda r: r["weight"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([0.0] + shares, [single["recall@50"]] + [next(r["recall@50"] for r in grid if r["candidate_share"] == s) for s in shares],
              marker="o")
    left.set_xlabel("share of the 50 candidates retrieved along the interests")
    left.set_ylabel("recall@50 of the candidates")
    right.plot([r["weight"] for r in at_share], [r["ndcg@10"] for r in at_share], marker="o", label="NDCG@10")
    right.axhline(single["ndcg@10"], color="grey", linestyle="--", label="single embedding")
    right.set_xlabel("weight of the best interest's score in the ranking")
    right.set_ylabel("NDCG@10")
    twin = right.twinx()
    twin.plot([r["weight"] for r in at_share], [r["ild@10"] for r in at_share], marker="s", color="tab:orange", label="ILD@10")
    twin.set_ylabel("intra-list diversity@10 (axis: single's ± 10%)", color="tab:orange")
    twin.set_ylim(0.9 * single["ild@10"], 1.1 * single["ild@10"])
    right.legend(fontsize=8, loc="upper left")
    figure.suptitle(f"ML-1M test events, {output['users']} users: several interests against the single user embedding")
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / "interests.png", dpi=110)

if __name__ == "__main__":
    main()
