"""Offline probe: a trained dynrec run's scores blended with EASE's item-item scores (issue 19 §3).

    .venv/bin/python -m bench.item_item_blend --datasets ml-1m [--variants dynrec,dynrec-id]
                                              [--neighbours 0,200,50] [--cut-users N] [--weak-order]

Reads runs that `bench.accuracy` trained (same home, same flags) and writes
bench/results/item_item_blend.json. Each user's scores from both models are standardised over
the catalogue (mean 0, standard deviation 1) and added as `dynrec + weight * EASE`; the weight
is the one with the best validation NDCG@10 on a fixed grid (0 keeps dynrec alone), EASE is
fitted on the training events for validation and refitted on train + validation for test, as
the protocol does for every baseline. `--neighbours` keeps each item's K EASE weights of
largest magnitude, as a service would for a large catalogue. It measures what an item-item term
would be worth before serving one: the service ranks with dynrec alone.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.accuracy import derived, dynrec_config
from bench.common import write_results
from dynrec.config import DynrecConfig
from dynrec.data.interactions import Interactions
from dynrec.eval.baselines import EASE
from dynrec.eval.evaluate import evaluate
from dynrec.models.inputs import prepare_inputs
from dynrec.models.model import load_model
from dynrec.models.training import SequenceTrainer
from dynrec.state.imports import training_dataset

WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
EASE_L2 = 200.0  # EASE's validation choice on ML-1M, ML-100k and its order-free variant


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row to mean 0 and standard deviation 1, so two models' scores add on one scale."""
    scores = scores.astype(np.float64)
    return (scores - scores.mean(axis=1, keepdims=True)) / (scores.std(axis=1, keepdims=True) + 1e-9)


class Blend:
    """`Recommender` whose scores are a trained model's plus `weight` times an item-item model's."""

    def __init__(self, model, item_item: EASE, weight: float):
        self.model, self.item_item, self.weight = model, item_item, weight

    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        own = standardised(self.model.score(histories, users))
        if self.weight:
            own += self.weight * standardised(self.item_item.score(histories, users))
        return own.astype(np.float32)


def sparsified(model: EASE, neighbours: int) -> EASE:
    """`model` keeping only each item's `neighbours` weights of largest magnitude (0 keeps them
    all): what a service could hold for a large catalogue, n x neighbours instead of n x n. The
    negative weights count: keeping the largest positive ones only cost the order-free ML-100k
    blend 0.149 -> 0.135 at 200 neighbours, against 0.147 by magnitude."""
    if not neighbours or neighbours >= model.weights_.shape[1]:
        return model
    weights = model.weights_
    dropped = np.argpartition(-np.abs(weights), neighbours, axis=1)[:, neighbours:]
    kept = EASE(model.l2)
    kept.weights_ = weights.copy()
    np.put_along_axis(kept.weights_, dropped, 0.0, axis=1)
    return kept


def probe(config: DynrecConfig, neighbours: list[int]) -> dict[str, dict]:
    """Per neighbour count ("all", or "top<K>"): validation NDCG@10 per weight, the chosen weight,
    and test NDCG@10 of dynrec, EASE and the blend."""
    path = config.paths.model(config.run_name)
    if not path.is_file():
        raise SystemExit(f"no trained run at {path}: train it first with `python -m bench.accuracy` and the same flags")
    inputs = prepare_inputs(config, progress=False, dataset=training_dataset(config))
    trainer = SequenceTrainer(config, inputs.split, inputs.catalogue, inputs.created_at, texts=inputs.texts)
    trainer.model.load_state_dict(load_model(path)[0].state_dict())
    trainer.refresh_text()
    scorer, split, k = trainer.scorer(), inputs.split, config.eval.k

    def test(model) -> float:
        return evaluate(model, split.test_input, split.test_targets, k=k)[f"ndcg@{k}"]

    on_train, refitted_all = EASE(EASE_L2).fit(split.train), EASE(EASE_L2).fit(split.test_input)
    alone = round(test(scorer), 6)
    rows = {}
    for count in neighbours:
        kept = sparsified(on_train, count)
        valid = {w: evaluate(Blend(scorer, kept, w), split.train, split.valid_targets, k=k)[f"ndcg@{k}"] for w in WEIGHTS}
        chosen = max(WEIGHTS, key=lambda w: valid[w])
        refitted = sparsified(refitted_all, count)
        rows[f"top{count}" if count else "all"] = {
            "run": config.run_name,
            "valid_ndcg@10": {str(w): round(v, 6) for w, v in valid.items()},
            "weight": chosen,
            "test_ndcg@10": {"dynrec": alone, "ease": round(test(refitted), 6),
                             "blend": round(test(Blend(scorer, refitted, chosen)), 6)},
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-1m,ml-100k")
    parser.add_argument("--variants", default="dynrec,dynrec-id")
    parser.add_argument("--neighbours", default="0,200,50", help="EASE weights kept per item, comma-separated; 0 = all")
    parser.add_argument("--cut-users", type=int, default=0, help="the user cut (bench.accuracy --cut-users)")
    parser.add_argument("--weak-order", action="store_true", help="the order-free variants (bench.accuracy --weak-order)")
    args = parser.parse_args()
    neighbours = [int(n) for n in args.neighbours.split(",")]
    results: dict[str, dict] = {}
    for bundled in args.datasets.split(","):
        source, derived_source = derived(DynrecConfig.load(None).with_dataset(bundled), args.cut_users, args.weak_order)
        for variant in args.variants.split(","):
            rows = probe(dynrec_config(bundled, variant, None, derived_source), neighbours)
            results.setdefault(source.source.label, {})[variant] = rows
            for label, row in rows.items():
                tests = row["test_ndcg@10"]
                print(f"{source.source.label:<18} {variant:<10} {label:<7} weight {row['weight']:<5} "
                      f"dynrec {tests['dynrec']:.4f} EASE {tests['ease']:.4f} blend {tests['blend']:.4f}", flush=True)
    print(f"wrote {write_results('item_item_blend', results, merge=True)}")


if __name__ == "__main__":
    main()
