"""Train one dynrec model in this process (no Ray), for comparing training settings quickly.

    .venv/bin/python -m training.quick_train [--config my.yaml | --dataset NAME] \
        --set model.modalities=[id] --set train.learning_rate=0.002 --minutes 8

Reads the source like every command (`--config`, or `--dataset` for a bundled example); the
training settings are the defaults plus any `--set section.key=value`. Validates
every `--eval-epochs` epochs, prints the curve, stops after `--patience-evals` evaluations without
a better validation NDCG@10 or after `--minutes`, and prints the test figures of the best weights
as one JSON line (appended to `--out` when given). The figures the benchmark table quotes come from
bench/accuracy.py, which trains through Ray Train.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from dynrec.config import DynrecConfig
from dynrec.eval.evaluate import evaluate
from dynrec.models.inputs import prepare_inputs
from dynrec.models.training import SequenceTrainer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML/JSON config file (its source; default: the defaults)")
    parser.add_argument("--dataset", help="a bundled example instead of the config's source")
    parser.add_argument("--set", action="append", default=[], help="section.key=value (YAML value); repeatable")
    parser.add_argument("--eval-epochs", type=int, default=5)
    parser.add_argument("--patience-evals", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", help="append the result line to this file")
    args = parser.parse_args(argv)
    config = DynrecConfig.load(args.config)
    if args.dataset:
        config = config.with_dataset(args.dataset)
    for assignment in args.set:
        config = config.with_override(assignment)
    torch.set_num_threads(config.train.threads_per_worker)
    inputs = prepare_inputs(config, progress=False)
    trainer = SequenceTrainer(config, inputs.split, inputs.catalogue, inputs.created_at, texts=inputs.texts)
    best, best_epoch, best_state, stale, seconds = -1.0, 0, None, 0, []
    started, stopped_by = time.perf_counter(), "epochs"
    while trainer.epoch < config.train.epochs:
        loss, _, epoch_s = trainer.train_epoch()
        trainer.epoch += 1
        seconds.append(epoch_s)
        if trainer.epoch % args.eval_epochs:
            continue
        valid = trainer.validate()["ndcg@10"]
        if valid > best:
            best, best_epoch, best_state, stale = valid, trainer.epoch, copy.deepcopy(trainer.model.state_dict()), 0
        else:
            stale += 1
        elapsed = time.perf_counter() - started
        print(f"epoch {trainer.epoch} step {trainer.step} loss {loss:.4f} valid NDCG@10 {valid:.4f} "
              f"best {best:.4f}@{best_epoch} ({epoch_s:.2f} s/epoch, {elapsed:.0f} s)", flush=True)
        if stale >= args.patience_evals:
            stopped_by = "early_stopping"
            break
        if elapsed > 60 * args.minutes:
            stopped_by = "budget"
            break
    trainer.model.load_state_dict(best_state)
    trainer.refresh_text()
    test = evaluate(trainer.scorer(), inputs.split.test_input, inputs.split.test_targets, k=10)
    result = {
        "dataset": args.dataset, "settings": args.set, "best_valid_ndcg@10": round(best, 4), "best_epoch": best_epoch,
        "epochs": trainer.epoch, "steps": trainer.step, "test_ndcg@10": round(test["ndcg@10"], 4),
        "test_hr@10": round(test["hr@10"], 4), "epoch_s_median": round(float(np.median(seconds)), 2),
        "wall_s": round(time.perf_counter() - started), "stopped_by": stopped_by,
    }
    print(json.dumps(result), flush=True)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
