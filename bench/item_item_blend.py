"""Offline probe: a trained dynrec run's scores blended with EASE's item-item scores (issue 19 §3).

    .venv/bin/python -m bench.item_item_blend --datasets ml-1m [--variants dynrec,dynrec-id] [--weak-order]

Reads runs that `bench.accuracy` trained (same home, same flags) and writes
bench/results/item_item_blend.json. Each user's scores from both models are standardised over
the catalogue (mean 0, standard deviation 1) and added as `dynrec + weight * EASE`; the weight
is the one with the best validation NDCG@10 on a fixed grid (0 keeps dynrec alone), EASE is
fitted on the training events for validation and refitted on train + validation for test, as
the protocol does for every baseline. It measures what an item-item term would be worth before
serving one: the service ranks with dynrec alone.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.accuracy import dynrec_config, weak_order
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


def probe(config: DynrecConfig) -> dict:
    """Validation NDCG@10 per weight, the chosen weight, and test NDCG@10 of dynrec, EASE and the blend."""
    path = config.paths.model(config.run_name)
    if not path.is_file():
        raise SystemExit(f"no trained run at {path}: train it first with `python -m bench.accuracy` and the same flags")
    inputs = prepare_inputs(config, progress=False, dataset=training_dataset(config))
    trainer = SequenceTrainer(config, inputs.split, inputs.catalogue, inputs.created_at, texts=inputs.texts)
    trainer.model.load_state_dict(load_model(path)[0].state_dict())
    trainer.refresh_text()
    scorer, split, k = trainer.scorer(), inputs.split, config.eval.k
    on_train = EASE(EASE_L2).fit(split.train)
    valid = {w: evaluate(Blend(scorer, on_train, w), split.train, split.valid_targets, k=k)[f"ndcg@{k}"] for w in WEIGHTS}
    chosen = max(WEIGHTS, key=lambda w: valid[w])
    refitted = EASE(EASE_L2).fit(split.test_input)

    def test(model) -> float:
        return evaluate(model, split.test_input, split.test_targets, k=k)[f"ndcg@{k}"]

    return {
        "run": config.run_name,
        "valid_ndcg@10": {str(w): round(v, 6) for w, v in valid.items()},
        "weight": chosen,
        "test_ndcg@10": {"dynrec": round(test(scorer), 6), "ease": round(test(refitted), 6),
                         "blend": round(test(Blend(scorer, refitted, chosen)), 6)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-1m,ml-100k")
    parser.add_argument("--variants", default="dynrec,dynrec-id")
    parser.add_argument("--weak-order", action="store_true", help="the order-free variants (bench.accuracy --weak-order)")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for bundled in args.datasets.split(","):
        source = DynrecConfig.load(None).with_dataset(bundled)
        if args.weak_order:
            source = weak_order(source)
        for variant in args.variants.split(","):
            row = probe(dynrec_config(bundled, variant, None, source.source if args.weak_order else None))
            results.setdefault(source.source.label, {})[variant] = row
            tests = row["test_ndcg@10"]
            print(f"{source.source.label:<18} {variant:<10} weight {row['weight']:<5} dynrec {tests['dynrec']:.4f} "
                  f"EASE {tests['ease']:.4f} blend {tests['blend']:.4f}", flush=True)
    print(f"wrote {write_results('item_item_blend', results, merge=True)}")


if __name__ == "__main__":
    main()
