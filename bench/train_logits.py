"""Training epochs with the full-softmax logits in blocks (`train.logit_block_mb`, the default)
against the whole batch's logits at once: seconds per epoch, the loop thread's kernel time and
page faults, and the losses (the same up to float rounding).

    .venv/bin/python -m bench.train_logits [--epochs 4] [--config configs/ml-1m.yaml] [--modalities id,text,image]

Without behaviour a batch's logits are one matrix (with it, one per time bucket), so that is
where blocks matter most: `--modalities` picks the model. Each trainer runs its epochs on a
thread of its own, as Ray Train runs the training loop, and the two take turns (whole, blocks,
whole, ...), so that both see the same load on a shared machine.
Writes bench/results/train_logits.json.
"""

from __future__ import annotations

import argparse
import resource
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import machine, write_results
from dynrec.config import DynrecConfig
from dynrec.models.inputs import prepare_inputs
from dynrec.models.training import SequenceTrainer
from dynrec.state.imports import training_dataset

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ml-1m.yaml"


def timed_epoch(trainer: SequenceTrainer) -> dict:
    """One epoch, with this thread's kernel time and page faults (RUSAGE_THREAD: Linux)."""
    before = resource.getrusage(resource.RUSAGE_THREAD)
    loss, _, took = trainer.train_epoch()
    after = resource.getrusage(resource.RUSAGE_THREAD)
    trainer.epoch += 1
    return {"epoch_s": took, "loss": loss, "kernel_s": after.ru_stime - before.ru_stime,
            "page_faults": after.ru_minflt - before.ru_minflt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--modalities", help="comma-separated (default: the config's)")
    args = parser.parse_args()
    config = DynrecConfig.load(args.config)
    if args.modalities:
        config.model.modalities = tuple(args.modalities.split(","))
    torch.set_num_threads(config.train.threads_per_worker)
    inputs = prepare_inputs(config, progress=True, dataset=training_dataset(config))
    settings = {"whole": 0.0, "blocks": config.train.logit_block_mb}
    trainers, threads = {}, {}
    for name, block_mb in settings.items():
        setting = replace(config, train=replace(config.train, logit_block_mb=block_mb))
        trainers[name] = SequenceTrainer(setting, inputs.split, inputs.catalogue, inputs.created_at)
        threads[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"train-{name}")
    epochs: dict[str, list[dict]] = {name: [] for name in settings}
    for epoch in range(args.epochs):
        for name, trainer in trainers.items():
            e = threads[name].submit(timed_epoch, trainer).result()
            epochs[name].append(e)
            print(f"epoch {epoch + 1}/{args.epochs} {name}: {e['epoch_s']:.1f} s, kernel {e['kernel_s']:.1f} s, "
                  f"{e['page_faults']:,} page faults, loss {e['loss']:.5f}", flush=True)
    for pool in threads.values():
        pool.shutdown()
    results: dict = {"machine": machine(), "config": Path(args.config).name, "epochs": args.epochs,
                     "logit_block_mb": config.train.logit_block_mb, "logit_rows": trainers["blocks"].logit_rows,
                     "items": inputs.split.train.n_items, "modalities": list(config.model.modalities)}
    for name, rows in epochs.items():
        results[name] = {key: statistics.median(r[key] for r in rows) for key in ("epoch_s", "kernel_s", "page_faults")}
        results[name]["losses"] = [r["loss"] for r in rows]
    results["epoch_speedup"] = results["whole"]["epoch_s"] / results["blocks"]["epoch_s"]
    results["max_loss_difference"] = max(abs(a - b) for a, b in zip(results["whole"]["losses"], results["blocks"]["losses"]))
    write_results("train_logits", {"+".join(config.model.modalities): results}, merge=True)
    print(f"\n{'logits':<8}{'epoch s':>9}{'kernel s':>10}{'page faults':>13}")
    for name in settings:
        r = results[name]
        print(f"{name:<8}{r['epoch_s']:>9.1f}{r['kernel_s']:>10.1f}{r['page_faults']:>13,.0f}")
    print(f"speed-up {results['epoch_speedup']:.2f}x (medians of {args.epochs} alternating epochs each; "
          f"{results['logit_rows']} positions a block), losses differ by at most {results['max_loss_difference']:.2e}")


if __name__ == "__main__":
    main()
