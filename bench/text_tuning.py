"""Does tuning MiniLM's top layers with the recommender (model.text_layers) pay, at equal wall time?

    .venv/bin/python -m bench.text_tuning [--dataset ml-100k] [--minutes 8] [--layers 0,1]

For each setting, dynrec is trained on the cold-item split of bench/cold_start.py (10% of the
interacted items leave training) for the same wall-clock budget, without early stopping, and the
best validation weights are kept. Reported for each: warm items (NDCG@10 and HR@10 on the
leave-one-out test of the remaining data, ranked among all items) and cold items (each user's
first event with a new item, ranked among the new items, embedded from content alone), with the
epochs, seconds per epoch and when the best validation came.

Writes bench/results/text_tuning.json as {"<dataset>": {"layers=<k>": {...}}} and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from bench.cold_start import dynrec_scores
from bench.common import ROOT, machine, write_results
from dynrec.config import DynrecConfig
from dynrec.data import cold_item_split, leave_one_out
from dynrec.eval.cold_start import case_histories, rank_metrics
from dynrec.eval.evaluate import evaluate
from dynrec.models.inputs import prepare_inputs
from dynrec.models.training import SequenceTrainer


def run(config: DynrecConfig, inputs, layers: int) -> dict:
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, text_layers=layers))
    split = cold_item_split(inputs.interactions, config.data.cold_item_fraction, config.data.seed)
    histories, kept = case_histories(split)
    targets = np.searchsorted(split.new_items, split.case_items[kept])
    warm = leave_one_out(split.train)
    started = time.perf_counter()
    trainer = SequenceTrainer(config, warm, inputs.catalogue, inputs.created_at, texts=inputs.texts)
    trainer.fit(progress=True)
    wall_s = time.perf_counter() - started
    test = evaluate(trainer.scorer(), warm.test_input, warm.test_targets, k=config.eval.k)
    cold = rank_metrics(dynrec_scores(trainer, histories, split.new_items, config), targets)
    timing = trainer.timing()
    return {
        "warm_ndcg@10": test["ndcg@10"], "warm_hr@10": test["hr@10"],
        "cold_ndcg@10": cold["ndcg@10"], "cold_hr@10": cold["hr@10"],
        "best_valid_ndcg@10": trainer.best_ndcg, "epochs": trainer.epoch, "epoch_s_median": timing["epoch_s_median"],
        "best_s": timing["best_s"], "wall_s": wall_s, "stopped_by": timing["stopped_by"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--minutes", type=float, default=8.0, help="the training budget of every setting")
    parser.add_argument("--layers", default="0,1", help="model.text_layers settings to compare (0: MiniLM frozen)")
    args = parser.parse_args()
    config = DynrecConfig.load(ROOT / "configs" / f"{args.dataset}.yaml")
    # the whole budget for every setting: equal wall time, not whichever stops first
    config.train.max_minutes, config.train.patience, config.train.patience_steps = args.minutes, 10**6, 10**9
    torch.set_num_threads(config.train.threads_per_worker)
    inputs = prepare_inputs(config)
    rows = {f"layers={k}": run(config, inputs, int(k)) for k in args.layers.split(",")}
    print(f"\n{args.dataset}, {args.minutes:g} minutes each")
    print(f"{'setting':<10}{'warm NDCG':>10}{'warm HR':>9}{'cold NDCG':>10}{'cold HR':>9}{'epochs':>8}{'s/epoch':>9}{'best at s':>10}")
    for name, r in rows.items():
        print(f"{name:<10}{r['warm_ndcg@10']:>10.4f}{r['warm_hr@10']:>9.4f}{r['cold_ndcg@10']:>10.4f}{r['cold_hr@10']:>9.4f}"
              f"{r['epochs']:>8}{r['epoch_s_median']:>9.2f}{r['best_s']:>10.0f}")
    path = write_results("text_tuning", {args.dataset: {**rows, "minutes": args.minutes, "machine": machine()}}, merge=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
