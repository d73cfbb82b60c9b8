"""Cold items (DESIGN.md protocol) on ML-1M partial.

    .venv/bin/python -m bench.cold_start [--minutes 10]

10% of the interacted items (seed 0) are new: all their events leave training. dynrec is trained
on what is left (configs/ml-1m.yaml, early stopping on a leave-one-out validation of the
remaining data, within --minutes). Each user's first event with a new item is a case: the user
embedding comes from the history before it, and the item is ranked among all new items, which
are embedded from content only (no ID embedding, no behaviour history). Cases without any
earlier history are left out. Baselines: random (exact expectation) and content-kNN (mean text
embedding of the history).

Writes bench/results/cold_start.json as {"ml-1m": {model: {hr@10, ndcg@10}}}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import write_results
from dynrec.config import DynrecConfig
from dynrec.data import cold_item_split, leave_one_out
from dynrec.eval.cold_start import case_histories, content_knn_scores, random_expectation, rank_metrics
from dynrec.models.inputs import prepare_inputs
from dynrec.models.model import Catalogue, event_type_codes, make_batch
from dynrec.models.training import SequenceTrainer, behaviour_for

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ml-1m.yaml"


@torch.no_grad()
def dynrec_scores(trainer: SequenceTrainer, histories, new_items: np.ndarray, config: DynrecConfig) -> np.ndarray:
    model = trainer.model.eval()
    catalogue = trainer.catalogue
    index = catalogue.index.clone()
    index[torch.as_tensor(new_items)] = -1  # new items have no trained ID embedding
    content_only = Catalogue(index, catalogue.text, catalogue.text_mask, catalogue.image, catalogue.image_mask)
    train = trainer.split.train
    snapshot = behaviour_for(train, trainer.created_at, config).snapshot(int(train.timestamps.max()) + 1)
    table = model.item_table(content_only, torch.from_numpy(snapshot))
    codes = event_type_codes(histories, config.model.event_types)
    scores = []
    for start in range(0, histories.n_users, 512):
        users = np.arange(start, min(start + 512, histories.n_users))
        embeddings = model.user_embeddings(make_batch(histories, users, config.model.max_length, codes), table)
        scores.append((embeddings @ table[0, torch.as_tensor(new_items)].T).numpy())
    return np.concatenate(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget for the cold-split model")
    args = parser.parse_args()
    config = DynrecConfig.load(CONFIG)
    config.train.max_minutes = args.minutes
    torch.set_num_threads(config.train.threads_per_worker)
    inputs = prepare_inputs(config)
    split = cold_item_split(inputs.interactions, config.data.cold_item_fraction, config.data.seed)
    histories, kept = case_histories(split)
    targets = np.searchsorted(split.new_items, split.case_items[kept])

    started = time.perf_counter()
    trainer = SequenceTrainer(config, leave_one_out(split.train), inputs.catalogue, inputs.created_at, texts=inputs.texts)
    trainer.fit(progress=True)
    train_s = time.perf_counter() - started

    text = inputs.catalogue.text.numpy()
    results = {
        "dynrec": rank_metrics(dynrec_scores(trainer, histories, split.new_items, config), targets),
        "content-knn": rank_metrics(content_knn_scores(histories, text, split.new_items), targets),
        "random": random_expectation(len(split.new_items)),
    }
    print(f"new items {len(split.new_items)}, cases {len(kept)} (of {len(split.case_users)}; the rest had no history)")
    print(f"dynrec trained on the cold split in {train_s / 60:.1f} min, best validation NDCG@10 {trainer.best_ndcg:.4f}\n")
    print(f"{'model':<12} {'HR@10':>7} {'NDCG@10':>8}")
    for name, row in results.items():
        print(f"{name:<12} {row['hr@10']:>7.4f} {row['ndcg@10']:>8.4f}")
    path = write_results("cold_start", {"ml-1m": {k: {m: round(v, 6) for m, v in row.items()} for k, row in results.items()}})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
