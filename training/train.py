"""Ray Train job: fine-tune the item fusion and user sequence models with DDP across workers.

    python -m training.train --config my.yaml        (or: dynrec train --config my.yaml)

Every epoch is reported to Ray Train with a checkpoint (model, optimizer, early-stopping state).
Rerunning the same run name resumes from its latest checkpoint; `train.resume_from` starts from
any checkpoint folder. The best model is written to <home>/artifacts/<run name>/model.pt, which
is what serving loads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, get_device, prepare_model

from dynrec.artifacts.prepare import ensure_manifest, onnx_folder
from dynrec.artifacts.publish import publish
from dynrec.artifacts.versions import PublishedModel, better_than_served, publish_model
from dynrec.config import DynrecConfig
from dynrec.models.inputs import prepare_inputs
from dynrec.models.model import load_model, save_model
from dynrec.models.training import EpochReport, SequenceTrainer, restored_scorer
from dynrec.models.item_item import fit_item_item
from dynrec.ranking.item_item import ITEM_ITEM_FILE
from dynrec.state import open_store
from dynrec.state.imports import training_dataset
from training.priority import idle_runtime_env, run_idle
from training.ray_cluster import connect_ray

TRAINER_STATE = "trainer.pt"
MODEL_FILE = "model.pt"


def _checkpoint_to_resume(config: DynrecConfig) -> Checkpoint | None:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.train.resume_from:
        checkpoint = Checkpoint.from_directory(config.train.resume_from)
    return checkpoint


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    config = DynrecConfig.from_dict(loop_config["config"])
    if config.train.priority == "idle":
        run_idle()
    torch.set_num_threads(config.train.threads_per_worker)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    inputs = prepare_inputs(config, progress=False, dataset=training_dataset(config))
    trainer = SequenceTrainer(
        config, inputs.split, inputs.catalogue, inputs.created_at, rank=rank, world_size=world_size,
        wrap_model=prepare_model if world_size > 1 else None, device=get_device(), texts=inputs.texts,
    )
    checkpoint = _checkpoint_to_resume(config)
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(torch.load(Path(folder) / TRAINER_STATE, weights_only=False, map_location=trainer.device))
        if rank == 0:
            print(f"resumed at epoch {trainer.epoch} (best NDCG@10 {trainer.best_ndcg:.4f})", flush=True)

    def on_epoch(report: EpochReport, trainer: SequenceTrainer) -> None:
        if rank == 0:
            valid = f" valid NDCG@10 {report.valid['ndcg@10']:.4f}" if report.valid else ""
            print(
                f"epoch {report.epoch}/{config.train.epochs} loss {report.loss:.4f}{valid} best {report.best_ndcg:.4f} "
                f"({report.seconds:.1f} s, {report.samples_per_s:,.0f} samples/s)",
                flush=True,
            )
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                torch.save(trainer.state_dict(), Path(folder) / TRAINER_STATE)
                saved = Checkpoint.from_directory(folder)
            ray.train.report(report.metrics(), checkpoint=saved)

    trainer.fit(on_epoch, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        saved = None
        metrics = {"final": True, "best_ndcg@10": trainer.best_ndcg, "epoch": trainer.epoch, **trainer.timing()}
        if rank == 0:
            fit = fit_item_item(trainer.scorer(), inputs.split, inputs.interactions, inputs.interactions.item_ids,
                                config.item_item, k=config.eval.k)
            metrics.update(fit.metrics(config.eval.k))
            save_model(Path(folder) / MODEL_FILE, trainer.model, inputs.interactions.item_ids, metrics)
            if fit.weights is not None:
                fit.weights.save(Path(folder) / ITEM_ITEM_FILE)
            torch.save(trainer.state_dict(), Path(folder) / TRAINER_STATE)
            saved = Checkpoint.from_directory(folder)
            print(f"test: {json.dumps({k: round(v, 4) for k, v in fit.test.items()})} "
                  f"(item-item weight {metrics['item_item_weight']:g}; the model alone: NDCG@10 "
                  f"{fit.test_alone[f'ndcg@{config.eval.k}']:.4f})", flush=True)
        ray.train.report(metrics, checkpoint=saved)


def run_training(config: DynrecConfig) -> dict[str, Any]:
    """Run the TorchTrainer on the current (or a new local) Ray cluster; returns the final metrics
    and where the served model was written."""
    idle = config.train.priority == "idle"
    if idle:
        run_idle()
    connect_ray(idle_runtime_env() if idle else None)
    # build the content-embedding cache once here, so the workers only read it
    prepare_inputs(config, progress=True, dataset=training_dataset(config))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config.to_dict()},
        scaling_config=ScalingConfig(
            num_workers=config.train.num_workers,
            use_gpu=config.train.use_gpu,
            resources_per_worker={"CPU": config.train.cpus_per_worker or config.train.threads_per_worker},
        ),
        run_config=RunConfig(
            name=config.run_name,
            storage_path=str(config.paths.runs),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    started = time.perf_counter()
    result = trainer.fit()
    artefacts = config.paths.run(config.run_name)
    artefacts.mkdir(parents=True, exist_ok=True)
    with result.checkpoint.as_directory() as folder:
        shutil.copy(Path(folder) / MODEL_FILE, artefacts / MODEL_FILE)
        copy_item_item(Path(folder), artefacts)
    summary = {**result.metrics, "wall_s": time.perf_counter() - started, "model_path": str(artefacts / MODEL_FILE)}
    (artefacts / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    publish_run(config)
    if config.train.publish:
        summary["published"] = publish_to_service(config, artefacts / MODEL_FILE, result.metrics.get("best_ndcg@10"))
    return summary


def copy_item_item(source: Path, artefacts: Path) -> None:
    """The run's item-item weights beside its model, or none there when it has none (a run of the
    same name from before must not leave its weights to a model that did not choose them)."""
    if (source / ITEM_ITEM_FILE).is_file():
        shutil.copy(source / ITEM_ITEM_FILE, artefacts / ITEM_ITEM_FILE)
    else:
        (artefacts / ITEM_ITEM_FILE).unlink(missing_ok=True)


def publish_run(config: DynrecConfig) -> None:
    """The run's folder (model, item-item weights, metrics) to `artifacts.uri`, for replicas on other nodes."""
    publish(config.home, f"artifacts/{config.run_name}", config.artifacts.uri)


def add_item_item(config: DynrecConfig) -> dict[str, Any]:
    """Fit the item-item term (dynrec.ranking.item_item) for a finished run trained without one, as
    the training job fits it, beside its model (published to `artifacts.uri` with the run); returns
    its metrics.json, updated."""
    model_path = config.paths.model(config.run_name)
    inputs = prepare_inputs(config, progress=False, dataset=training_dataset(config))
    fit = fit_item_item(restored_scorer(config, inputs, model_path), inputs.split, inputs.interactions,
                        inputs.interactions.item_ids, config.item_item, k=config.eval.k)
    if fit.weights is not None:
        fit.weights.save(model_path.with_name(ITEM_ITEM_FILE))
    saved = model_path.with_name("metrics.json")
    summary = {**(json.loads(saved.read_text()) if saved.is_file() else {}), **fit.metrics(config.eval.k)}
    saved.write_text(json.dumps(summary, indent=2, default=str))
    publish_run(config)
    return summary


def publish_to_service(config: DynrecConfig, model_path: Path, valid_ndcg: float | None, force: bool = False) -> bool:
    """Export the run's ONNX graphs (so replicas need no torch), copy them to `artifacts.uri`, and
    name the run in the store as the served model when it beats the served one on validation (or
    `force`): running replicas switch to it without a restart (dynrec.artifacts.versions)."""
    manifest = ensure_manifest(config, model_path)
    publish(config.home, onnx_folder(config), config.artifacts.uri)
    store = open_store(config)
    try:
        bootstrap = config.paths.model(f"{config.source.label}-bootstrap")  # served while nothing is published
        unpublished = load_model(bootstrap)[2].get("best_ndcg@10") if bootstrap.is_file() else None
        if not force and not better_than_served(store, valid_ndcg, unpublished):
            print(f"not published: validation NDCG@10 {valid_ndcg} is below the served model's", flush=True)
            return False
        publish_model(store, PublishedModel(config.run_name, manifest.fingerprint, valid_ndcg, time.time(), manifest.text_model))
    finally:
        store.close()
    print(f"published {config.run_name} (model {manifest.fingerprint}): serving replicas switch to it", flush=True)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML/JSON config file")
    args = parser.parse_args(argv)
    summary = run_training(DynrecConfig.load(args.config))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
