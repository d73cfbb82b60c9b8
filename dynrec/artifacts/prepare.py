"""What the service needs on disk before it starts: a trained model and the catalogue's embeddings.

A trained run (`dynrec train`) and its Ray Data embeddings (`dynrec encode`) are used when they
exist, fetched first from `artifacts.uri` when one is set (see dynrec.artifacts.publish). On a fresh
machine a small bootstrap model is trained in-process (plain torch, a few epochs) on what the
state store holds, and the store's catalogue embedded in-process, so `serve run` works with
nothing prepared and no dataset files beside it; items imported after the embeddings were made
are embedded at the next start. A file lock makes concurrent replicas wait for one preparation
instead of racing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dynrec.artifacts.publish import fetch
from dynrec.artifacts.versions import published_model
from dynrec.config import DynrecConfig
from dynrec.data import Dataset
from dynrec.data.schemas import NOT_INTERACTIONS
from dynrec.items.encoding import Batch
from dynrec.memory import release_unused_memory
from dynrec.models.runtime import ModelManifest, ModelRuntime, exported_graphs
from dynrec.state import open_store
from dynrec.state.imports import latest_records, stored_dataset, vector_carrying


@dataclass
class Artifacts:
    model_path: Path
    embeddings_path: Path
    run_name: str
    manifest: ModelManifest


def onnx_folder(config: DynrecConfig) -> str:
    """The ONNX exports' folder relative to `home` (where `artifacts.uri` mirrors it)."""
    return os.path.relpath(config.runtime.onnx_dir, config.home)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_artifacts(config: DynrecConfig, progress: bool = False) -> Artifacts:
    """The served model and embeddings, preparing whatever is missing (see module docstring)."""
    with _locked(config.paths.prepare_lock):
        store = open_store(config)
        published = published_model(store)
        run_name = published.run_name if published is not None else config.run_name
        if config.artifacts.uri:  # runs published by the training and encoding jobs (or another node)
            for run in (run_name, f"{config.source.label}-bootstrap"):
                fetch_run(config, run)
        model_path = config.paths.model(run_name)
        try:
            changes = store.item_changes(0)
            carried = vector_carrying(changes)
            item_ids = [i for i in latest_records(changes) if i not in carried]  # what the embeddings must cover
            # the whole store is read only when there is something to train or embed
            dataset = cache(lambda: stored_dataset(store, config.source.label)[0])
            return _prepare(config, run_name, model_path, item_ids, dataset, progress)
        finally:
            store.close()


def published_artifacts(config: DynrecConfig, run_name: str) -> Artifacts:
    """A run that `dynrec train` published while the service runs: fetched when it is not here yet,
    with its manifest (and ONNX graphs, which the publisher normally exported already). Its
    catalogue embeddings are not made: a running service's replicas boot from the store's
    catalogue snapshot and fuse its items with the new model."""
    with _locked(config.paths.prepare_lock):
        fetch_run(config, run_name)
        model_path = config.paths.model(run_name)
        return Artifacts(model_path, config.paths.embeddings(run_name), run_name, ensure_manifest(config, model_path))


def fetch_run(config: DynrecConfig, run_name: str) -> None:
    """Copy a run's model, its catalogue embeddings and the ONNX exports from `artifacts.uri` into
    this home, where they are not here yet."""
    for folder in (config.paths.run(run_name), config.paths.embeddings(run_name).parent):
        fetch(config.home, os.path.relpath(folder, config.home), config.artifacts.uri)
    fetch(config.home, onnx_folder(config), config.artifacts.uri)


def _prepare(config: DynrecConfig, run_name: str, model_path: Path, item_ids: list[str], dataset: Callable[[], Dataset],
             progress: bool) -> Artifacts:
    """The trained run's model, else the bootstrap (trained now if missing and the store holds
    enough), else an untrained one; then embeddings for every stored item."""
    if not model_path.is_file():
        run_name = f"{config.source.label}-bootstrap"
        model_path = config.paths.model(run_name)
        if not model_path.is_file() and not trainable(config, dataset()):
            run_name = f"{config.source.label}-untrained"
            model_path = config.paths.model(run_name)
            if not model_path.is_file():
                save_untrained(config, model_path, progress)
        elif not model_path.is_file():
            train_bootstrap(config, dataset(), model_path, progress)
            release_unused_memory()
    manifest = ensure_manifest(config, model_path)
    output = config.paths.embeddings(run_name)
    if not _embeddings_current(output, manifest.fingerprint, item_ids):
        embed_catalogue_in_process(config, dataset(), model_path, output, progress)
        release_unused_memory()
    return Artifacts(model_path, output, run_name, manifest)


def ensure_manifest(config: DynrecConfig, model_path: Path) -> ModelManifest:
    """The checkpoint's manifest; when it is missing or stale, or its ONNX graphs are, the model is
    loaded (torch) once to write them, so the replicas after this one need not load it."""
    manifest = ModelManifest.read(model_path)
    if manifest is not None and (config.runtime.backend != "onnx" or exported_graphs(config.runtime, manifest.fingerprint)):
        return manifest
    from dynrec.models.model import load_model

    model, item_ids, _ = load_model(model_path)
    manifest = ModelRuntime(model, config.runtime).manifest(model_path, item_ids)
    manifest.write(model_path)
    return manifest


def with_text_model(config: DynrecConfig, model_path: Path) -> DynrecConfig:
    """`config` with the text model whose vectors the model at `model_path` reads: its tuned
    encoder (ModelManifest.text_model) when it has one, else the configured one."""
    manifest = ModelManifest.read(model_path)
    if manifest is None or not manifest.text_model:
        return config
    encoders = dataclasses.replace(config.encoders, text_model_path=str(Path(model_path).parent / manifest.text_model))
    return dataclasses.replace(config, encoders=encoders)


def trainable(config: DynrecConfig, dataset: Dataset) -> bool:
    """Enough users with enough events for the bootstrap model to learn anything."""
    counts = dataset.events["user_id"].value_counts().field("counts").to_numpy(zero_copy_only=False)
    return int((counts >= config.data.min_interactions).sum()) >= config.serving.bootstrap_min_users


def save_untrained(config: DynrecConfig, model_path: Path, progress: bool) -> None:
    """A seeded, untrained model for an empty start: with no trained IDs, its fusion embeds items from
    their content alone, and ranking leans on popularity and the prior until a model is trained."""
    import torch

    from dynrec.encoders.behaviour import BehaviourFeatures
    from dynrec.encoders.image import ImageEncoder
    from dynrec.encoders.text import TextEncoder
    from dynrec.models.model import DynrecModel, save_model

    if progress:
        print(f"the store holds too little to train on ({config.source.label}): serving an untrained model "
              "until `dynrec train` runs", flush=True)
    torch.manual_seed(config.train.seed)
    behaviour_dim = BehaviourFeatures(1, config=config.behaviour).item_features(0, 0).shape[0]
    # one ID row that no item maps to (the graphs cannot gather from an empty table)
    model = DynrecModel(config.model, 1, TextEncoder.dim, ImageEncoder.dim, behaviour_dim).eval()
    _save(model_path, lambda temp: save_model(temp, model, [], {"untrained": True}))


def _save(path: Path, write) -> None:
    """`write(temp)`, then move the file into place: readers see no half-written model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temp)
    os.replace(temp, path)


def train_bootstrap(config: DynrecConfig, dataset: Dataset, model_path: Path, progress: bool) -> None:
    """A few epochs of plain-torch training: enough to serve sensibly, minutes on a laptop."""
    from dynrec.models.inputs import prepare_inputs
    from dynrec.models.model import save_model
    from dynrec.models.training import SequenceTrainer

    train = dataclasses.replace(
        config.train,
        epochs=config.serving.bootstrap_epochs,
        eval_every=config.serving.bootstrap_epochs,
        max_minutes=config.serving.bootstrap_minutes,
    )
    config = dataclasses.replace(config, train=train)
    if progress:
        print(f"no trained model yet: training a bootstrap model on {config.source.label} "
              f"({train.epochs} epochs, at most {train.max_minutes:g} min)", flush=True)
    inputs = prepare_inputs(config, progress=progress, dataset=dataset)
    trainer = SequenceTrainer(config, inputs.split, inputs.catalogue, inputs.created_at, texts=inputs.texts)
    best = trainer.fit(progress=progress)
    _save(model_path, lambda temp: save_model(temp, trainer.model, inputs.interactions.item_ids,
                                              {"bootstrap": True, "best_ndcg@10": best}))


def _embeddings_current(path: Path, fingerprint: str, item_ids: list[str]) -> bool:
    """Made by this model, for every item the store holds."""
    if not path.is_file():
        return False
    table = pq.read_table(path, columns=["item_id", "model_version"])
    return table["model_version"].unique().to_pylist() == [fingerprint] and set(item_ids) <= set(table["item_id"].to_pylist())


def encoded_items(config: DynrecConfig, dataset: Dataset, model_path: Path, progress: bool,
                  items: pa.Table | None = None) -> Batch:
    """The catalogue-encoding steps in this process, in one batch, for `items` (default: all of
    `dataset`'s), with the model at `model_path` and the behaviour at the end of `dataset`'s events;
    content vectors come from the cache for content seen before."""
    from dynrec.data import Interactions
    from dynrec.encoders.behaviour import latest_behaviour
    from dynrec.encoders.content import (
        CachedImageEncoder,
        CachedTextEncoder,
        EmbeddingCache,
    )
    from dynrec.items.encoding import batch_of, encode_batch
    from dynrec.models.model import load_model

    items = dataset.items if items is None else items
    ensure_manifest(config, model_path)
    config = with_text_model(config, model_path)
    model, trained_ids, _ = load_model(model_path)
    runtime = ModelRuntime(model, config.runtime)
    created_at = dataset.items["created_at"].cast("int64").fill_null(-1).to_numpy()
    _, behaviour, empty = latest_behaviour(Interactions.from_dataset(dataset, exclude_types=NOT_INTERACTIONS), created_at, config.behaviour)
    cache = EmbeddingCache(config.paths.cache)
    return encode_batch(batch_of(items), CachedTextEncoder(cache, config.encoders, config.runtime, progress=progress),
                        CachedImageEncoder(cache, config.encoders, config.runtime, progress=progress), runtime,
                        {item_id: i for i, item_id in enumerate(trained_ids)}, behaviour, empty)


def embed_catalogue_in_process(config: DynrecConfig, dataset: Dataset, model_path: Path, output: Path, progress: bool) -> None:
    """The Ray Data job's output (same steps, same columns), computed in this process."""
    encoded = encoded_items(config, dataset, model_path, progress)
    table = pa.table(
        {
            "item_id": pa.array(encoded["item_id"].tolist(), pa.string()),
            "content_hash": pa.array(encoded["content_hash"].tolist(), pa.string()),
            "text_mask": encoded["text_mask"],
            "text_embedding": fixed_list(encoded["text_embedding"]),
            "image_embedding": fixed_list(encoded["image_embedding"]),
            "image_mask": encoded["image_mask"],
            "embedding": fixed_list(encoded["embedding"]),
            "model_version": pa.array(encoded["model_version"].tolist(), pa.string()),
        }
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    pq.write_table(table, temp)
    os.replace(temp, output)


def served_model_path(config: DynrecConfig) -> Path | None:
    """The model a service on this home serves: the run published to its store, else the trained
    run, else the bootstrap, else the untrained one; None before the service's first start."""
    label = config.source.label
    store = open_store(config)
    try:
        published = published_model(store)
    finally:
        store.close()
    for run in ([published.run_name] if published else []) + [config.run_name, f"{label}-bootstrap", f"{label}-untrained"]:
        if config.paths.model(run).is_file():
            return config.paths.model(run)
    return None


def import_encoder(config: DynrecConfig, progress: bool = True) -> Callable[[Dataset, list[str]], Batch] | None:
    """For `dynrec import` into a home that has served: encodes the items the import changes with
    the served model, so their changes carry their vectors and a running service shows them at
    once, as it shows items put through the API. None before the first start, whose preparation
    embeds the whole catalogue anyway."""
    model_path = served_model_path(config)
    if model_path is None:
        return None

    def encode(dataset: Dataset, item_ids: list[str]) -> Batch:
        items = dataset.items.filter(pc.is_in(dataset.items["item_id"], value_set=pa.array(item_ids, pa.string())))
        return encoded_items(config, dataset, model_path, progress, items)

    return encode


def fixed_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), matrix.shape[1])


def vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column back to an (n, d) float32 matrix."""
    array = column.combine_chunks()
    if len(array) == 0:
        return np.zeros((0, array.type.list_size), np.float32)
    return array.flatten().to_numpy().astype(np.float32).reshape(len(array), -1)
