"""Training in bf16 autocast against fp32: seconds per epoch and validation NDCG@10 at equal work.

    .venv/bin/python -m bench.train_precision [--epochs 6] [--config configs/ml-1m.yaml]

Two trainers start from the same weights on the same data; their epochs alternate (fp32, bf16,
fp32, ...) so both see the same load on a shared machine. After `--epochs` each, both are scored
on validation. Answers whether `torch.autocast(bfloat16)` pays on this host's CPU (AMX or not),
which issue #19 asks to measure before any run uses it. Writes bench/results/train_precision.json.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from bench.common import machine, write_results
from dynrec.config import DynrecConfig
from dynrec.models.inputs import prepare_inputs
from dynrec.models.training import SequenceTrainer
from dynrec.state.imports import training_dataset

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ml-1m.yaml"
PRECISIONS = ("fp32", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    config = DynrecConfig.load(args.config)
    torch.set_num_threads(config.train.threads_per_worker)
    inputs = prepare_inputs(config, progress=True, dataset=training_dataset(config))
    trainers = {p: SequenceTrainer(config, inputs.split, inputs.catalogue, inputs.created_at) for p in PRECISIONS}
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for epoch in range(args.epochs):
        for precision, trainer in trainers.items():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss, _, took = trainer.train_epoch()
            trainer.epoch += 1
            seconds[precision].append(took)
            print(f"epoch {epoch + 1}/{args.epochs} {precision}: {took:.1f} s, loss {loss:.4f}", flush=True)
    results: dict = {"machine": machine(), "config": Path(args.config).name, "epochs": args.epochs,
                     "steps": trainers["fp32"].step}
    for precision, trainer in trainers.items():
        results[precision] = {
            "epoch_s_median": statistics.median(seconds[precision]),
            "epoch_s": seconds[precision],
            "valid_ndcg@10": trainer.validate()[f"ndcg@{config.eval.k}"],
        }
    results["bf16_speedup"] = results["fp32"]["epoch_s_median"] / results["bf16"]["epoch_s_median"]
    results["bf16_ndcg_delta"] = results["bf16"]["valid_ndcg@10"] / results["fp32"]["valid_ndcg@10"] - 1
    write_results("train_precision", results)
    print(f"\n{'precision':<10} {'epoch (s)':>10} {'valid NDCG@10':>14}")
    for precision in PRECISIONS:
        print(f"{precision:<10} {results[precision]['epoch_s_median']:>10.2f} {results[precision]['valid_ndcg@10']:>14.4f}")
    print(f"bf16 speed-up {results['bf16_speedup']:.2f}x, NDCG change {results['bf16_ndcg_delta']:+.1%} ({results['machine']['cpu_units']})")


if __name__ == "__main__":
    main()
