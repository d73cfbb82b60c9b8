"""Ray Train throughput at 1 worker x 2 threads against 2 DDP workers x 1 thread (same total threads).

    .venv/bin/python -m bench.train_scaling [--epochs 3]

Uses configs/ml-1m.yaml (all modalities) for a fixed number of epochs and reports the median
epoch time and training samples (target positions) per second. Writes
bench/results/train_scaling.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import machine, write_results
from dynrec.config import DynrecConfig
from training.train import run_training

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ml-1m.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    results = {"machine": machine(), "epochs": args.epochs}
    for workers, threads in ((1, 2), (2, 1)):
        config = DynrecConfig.load(CONFIG)
        config.train.epochs, config.train.eval_every, config.train.max_minutes = args.epochs, args.epochs, 0
        config.train.num_workers, config.train.threads_per_worker = workers, threads
        config.train.run_name = f"scaling-{workers}x{threads}"
        summary = run_training(config)
        results[f"{workers}x{threads}"] = {
            "workers": workers,
            "threads_per_worker": threads,
            "epoch_s_median": round(summary["epoch_s_median"], 2),
            "samples_per_s_median": round(summary["samples_per_s_median"] * workers, 1),
        }
    print(f"\n{'workers x threads':<18} {'epoch (s)':>10} {'samples/s':>10}")
    for key in ("1x2", "2x1"):
        row = results[key]
        print(f"{key:<18} {row['epoch_s_median']:>10.1f} {row['samples_per_s_median']:>10,.0f}")
    print(f"wrote {write_results('train_scaling', results)}")


if __name__ == "__main__":
    main()
