"""Offline probe: a trained dynrec run's scores blended with EASE's item-item scores (issue 19 §3).

    .venv/bin/python -m bench.item_item_blend --datasets ml-1m [--variants dynrec,dynrec-id]
                                              [--neighbours 0,200,50] [--cut-users N] [--weak-order]

Reads runs that `bench.accuracy` trained (same home, same flags) and writes
bench/results/item_item_blend.json. Each user's scores from both models are standardised over
the catalogue (mean 0, standard deviation 1) and added as `dynrec + weight * EASE`; the weight
is the one with the best validation NDCG@10 on a fixed grid (0 keeps dynrec alone), EASE is
fitted on the training events for validation and refitted on train + validation for test, as
the protocol does for every baseline. `--neighbours` keeps each item's K EASE weights of
largest magnitude, as the service does (`item_item.neighbours`). The training job fits the served
term the same way (dynrec.ranking.item_item) at the configured neighbour count; this probe
compares neighbour counts and variants on finished runs.
"""

from __future__ import annotations

import argparse

from bench.accuracy import derived, dynrec_config
from bench.common import write_results
from dynrec.config import DynrecConfig, ItemItemConfig
from dynrec.eval.baselines import EASE
from dynrec.eval.evaluate import evaluate
from dynrec.models.inputs import prepare_inputs
from dynrec.models.training import restored_scorer
from dynrec.models.item_item import Blend, sparsified
from dynrec.state.imports import training_dataset

WEIGHTS = ItemItemConfig().weights
EASE_L2 = ItemItemConfig().l2


def probe(config: DynrecConfig, neighbours: list[int]) -> dict[str, dict]:
    """Per neighbour count ("all", or "top<K>"): validation NDCG@10 per weight, the chosen weight,
    and test NDCG@10 of dynrec, EASE and the blend."""
    path = config.paths.model(config.run_name)
    if not path.is_file():
        raise SystemExit(f"no trained run at {path}: train it first with `python -m bench.accuracy` and the same flags")
    inputs = prepare_inputs(config, progress=False, dataset=training_dataset(config))
    scorer, split, k = restored_scorer(config, inputs, path), inputs.split, config.eval.k

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
