"""The GPU check: one short script for a machine with a CUDA GPU, run as it is when a task is lent one.

    python -m bench.gpu_check [--device cuda] [--data-dir DIR] [--epochs 3] [--results gpu_check]

Each step runs what the machine has and, where it lacks something, writes down what and moves on,
so one call always returns figures:
1. `training`: the ID+behaviour model on ML-100k with `SequenceTrainer`, the loop each Ray Train
   worker runs, on `--device` (its mixed precision: bf16 autocast on a GPU) and on the CPU.
   Placement parity: the untrained model's validation NDCG@10 on both (the same seed gives the
   same weights; a tensor left on the wrong device fails outright). Then positions/s on each, and
   the device's validation NDCG@10 after `--epochs`.
2. `ray_train`: `training.train` through Ray Train with `train.use_gpu` and 1, then 2 workers,
   as many as there are GPUs; needs Ray.
3. `onnx_cuda`: ONNX Runtime's CUDA provider (the `gpu` extra's onnxruntime-gpu). The trained
   model's fused item vectors on it against torch on the CPU (max abs difference), and MiniLM
   titles/s on it, batch 64.

The device tool's machines hold torch with CUDA but neither Ray nor onnxruntime-gpu, and their
wheels (ray 79 MB, onnxruntime-gpu 256 MB) are over what a call may carry (64 MiB), so there
steps 2 and 3 say so. The data travels with the call: copy `../shared/data/ml-100k` into a
folder that `.git/info/exclude` ignores, carry it, and pass that folder (the one holding
`ml-100k/`) as `--data-dir`. From the repository root, on this side:

    mkdir -p .gpu_data && cp -r ../shared/data/ml-100k .gpu_data/ && echo /.gpu_data/ >> .git/info/exclude

and on the GPU machine (carry `.gpu_data`; about 2 minutes):

    PYTHONUNBUFFERED=1 python3 -m bench.gpu_check --data-dir .gpu_data && cp bench/results/gpu_check.json $OUT/
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import write_results
from dynrec.config import DynrecConfig, RuntimeConfig, default_data_dir
from dynrec.data import Interactions, leave_one_out, load_ml100k
from dynrec.models.model import Catalogue
from dynrec.models.training import SequenceTrainer


def training_config(epochs: int) -> DynrecConfig:
    config = DynrecConfig()
    config.model.modalities = ("id", "behaviour")
    config.train.epochs, config.train.eval_every = epochs, epochs
    return config


def trainers(devices: tuple[str, ...], config: DynrecConfig, data_dir: Path) -> list[SequenceTrainer]:
    """One trainer per device on the same ML-100k split (the same seed: the same starting weights)."""
    dataset = load_ml100k(data_dir)
    split = leave_one_out(Interactions.from_dataset(dataset))
    n = split.train.n_items
    catalogue = Catalogue.from_arrays(np.zeros((n, 1)), np.zeros(n, bool), np.zeros((n, 1)), np.zeros(n, bool))
    created_at = dataset.items["created_at"].cast("int64").fill_null(-1).to_numpy()
    return [SequenceTrainer(config, split, catalogue, created_at, device=device) for device in devices]


def positions_per_s(trainer: SequenceTrainer, epochs: int) -> float:
    samples, seconds = 0, 0.0
    for _ in range(epochs):
        _, n, s = trainer.train_epoch()
        trainer.epoch += 1
        samples, seconds = samples + n, seconds + s
    return samples / seconds


def step_training(device: str, data_dir: Path, epochs: int) -> dict:
    config = training_config(epochs)
    on_device, on_cpu = trainers((device, "cpu"), config, data_dir)
    untrained = {"device": on_device.validate()["ndcg@10"], "cpu": on_cpu.validate()["ndcg@10"]}
    cpu_rate = positions_per_s(on_cpu, 1)
    device_rate = positions_per_s(on_device, epochs)
    return {
        "device": device,
        "autocast": str(on_device.autocast),
        "untrained_valid_ndcg@10": untrained,
        "placement_parity_abs_diff": abs(untrained["device"] - untrained["cpu"]),
        "positions_per_s": {"device": device_rate, "cpu": cpu_rate},
        "device_vs_cpu": device_rate / cpu_rate,
        "epochs": epochs,
        "valid_ndcg@10_after": on_device.validate()["ndcg@10"],
        "model": on_device.model.cpu(),
    }


def step_ray_train(data_dir: Path) -> dict:
    if importlib.util.find_spec("ray") is None:
        return {"skipped": "Ray is not installed here"}
    gpus = torch.cuda.device_count()
    if gpus == 0:
        return {"skipped": "no CUDA GPU"}
    from training.train import run_training

    runs = {}
    for workers in range(1, min(2, gpus) + 1):
        config = DynrecConfig.from_dict({
            "source": {"dataset": "ml-100k"}, "data": {"data_dir": str(data_dir)},
            "train": {"use_gpu": True, "num_workers": workers, "epochs": 2, "run_name": f"gpu-check-{workers}"},
        })
        started = time.perf_counter()
        summary = run_training(config)
        runs[f"{workers}_gpu_workers"] = {"wall_s": time.perf_counter() - started, "epochs": summary.get("epoch"),
                                          "best_valid_ndcg@10": summary.get("best_ndcg@10")}
    return runs


def step_onnx_cuda(model: torch.nn.Module, data_dir: Path, folder: Path, provider: str = "CUDAExecutionProvider") -> dict:
    """`provider` is what the step needs present; ONNX Runtime itself runs on the first it has
    (dynrec.onnx.session.pick_providers), CUDA before the CPU."""
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return {"skipped": f"onnxruntime {ort.__version__} here has no {provider} (the gpu extra's onnxruntime-gpu)"}
    from dynrec.encoders.text import TextEncoder
    from dynrec.models.runtime import ModelRuntime

    on_cuda = ModelRuntime(model, RuntimeConfig(backend="onnx", onnx_dir=str(folder)))
    on_cpu = ModelRuntime(model, RuntimeConfig(backend="torch"))
    n = model.fusion.n_items
    behaviour = np.random.default_rng(0).random((n, on_cpu.input_dims["behaviour"]), dtype=np.float32)
    index = np.arange(n)
    difference = float(np.abs(on_cuda.embed_items(index, behaviour=behaviour) - on_cpu.embed_items(index, behaviour=behaviour)).max())
    titles = load_ml100k(data_dir).items["title"].fill_null("").to_pylist()
    encoder = TextEncoder(None, runtime=RuntimeConfig(backend="onnx", onnx_dir=str(folder), precision="fp32"))
    encoder.encode(titles[:64])
    started = time.perf_counter()
    encoder.encode(titles)
    return {"fused_max_abs_diff": difference, "text_titles_per_s": len(titles) / (time.perf_counter() - started),
            "providers": ort.get_available_providers()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--results", default="gpu_check", help="results file name under bench/results")
    parser.add_argument("--onnx-dir", default="", help="where step 3 exports its graphs (default: a folder under /tmp)")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    results: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
        "cpus": os.cpu_count(),
    }
    training = step_training(args.device, data_dir, args.epochs)
    model = training.pop("model")
    results["training"] = training
    results["ray_train"] = step_ray_train(data_dir)
    results["onnx_cuda"] = step_onnx_cuda(model, data_dir, Path(args.onnx_dir or f"/tmp/gpu-check-onnx-{os.getpid()}"))
    path = write_results(args.results, results)
    print(f"\n{'step':<12} result")
    print(f"{'training':<12} {training['device']} {training['positions_per_s']['device']:,.0f} positions/s, "
          f"cpu {training['positions_per_s']['cpu']:,.0f} ({training['device_vs_cpu']:.2f}x); placement parity "
          f"{training['placement_parity_abs_diff']:.2e}; valid NDCG@10 {training['valid_ndcg@10_after']:.4f}")
    for step in ("ray_train", "onnx_cuda"):
        print(f"{step:<12} {results[step].get('skipped') or results[step]}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
