"""Ray Data job: batch-encode the catalogue into fused item embeddings (Parquet), incrementally.

    dynrec encode [--config my.yaml] [--full]        (or: python -m training.encode_catalog)

items (Parquet) -> the items to encode, in blocks of similar text length, longest first (an
incremental run finds the changed ones first, with content-hash tasks) -> text-encoder actor pool
(hash, then text) -> image-and-fusion actor pool (images are read and decoded inside it, then fused;
the steps of dynrec.items.encoding, which a replica's in-process path runs back to back) -> Parquet
rows of item_id, content_hash, model_version, embedding (+ the content vectors and masks serving
needs to re-fuse an item when its behaviour changes).

An item is re-encoded only when its content hash (text + image bytes) or the model version (a
fingerprint of the trained weights) differs from the previous output. Behaviour features are
the snapshot at the end of the dataset's events; serving keeps them live afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from dynrec.artifacts.prepare import onnx_folder
from dynrec.artifacts.publish import publish
from dynrec.config import DynrecConfig, EncoderConfig, RuntimeConfig
from dynrec.data import Interactions, load_source
from dynrec.encoders.behaviour import latest_behaviour
from dynrec.encoders.paths import chosen_path
from dynrec.items.encoding import Batch, fused, hashed, with_images, with_text
from dynrec.models.runtime import ModelManifest
from training.ray_cluster import connect_ray


TEXT_BATCH_ROWS = 512  # rows per block, and so per text-stage call
ITEM_COLUMNS = ["item_id", "title", "text", "categories", "image"]


@dataclass
class StageResources:
    concurrency: int
    num_cpus: float
    num_gpus: float
    threads: int  # ONNX Runtime intra-op threads per actor


def stage_resources(cluster: dict[str, float]) -> dict[str, StageResources]:
    """Actor-pool sizes from the cluster's resources: "text", and "image" (which fuses too).

    With GPUs, each pool gets one actor per GPU at half a GPU each, so a text and an image actor
    share a device. On CPUs, the pools take fractional CPUs so the read and hash tasks still get
    scheduled: two 1-CPU actors on a 2-core machine starve the reads and the job hangs. Encoding
    MiniLM over ML-1M's abstracts costs about twice the poster encoder, so text gets the larger
    pool. On a small node every actor runs one thread: the pools run at once and share the cores,
    and a one-thread actor never waits on a thread of its own that another process holds (one
    text actor of two threads saved 4 CPU-seconds of start-up on 2 cores, but reached 0.73x the
    plain loop on 19,415 items, against 0.85x). A second image thread costs more than it gives:
    the int8 poster encoder does 1.28x the posters on two threads as on one (AVX-512 EPYC), and
    on 2 cores the one-thread image actor took the ML-1M job from 61.9 to 56.8 s.
    """
    cpus, gpus = float(cluster.get("CPU", 1.0)), float(cluster.get("GPU", 0.0))
    if gpus >= 1:
        per_gpu = StageResources(concurrency=int(gpus), num_cpus=1.0, num_gpus=0.5, threads=1)
        return {"text": per_gpu, "image": per_gpu}
    if cpus <= 4:
        cores = max(1, int(cpus))
        return {"text": StageResources(cores, cpus / (4 * cores), 0.0, 1), "image": StageResources(1, cpus / 8, 0.0, 1)}
    return {
        "text": StageResources(max(1, int(cpus // 4)), 2.0, 0.0, 2),
        "image": StageResources(max(1, int(cpus // 8)), 2.0, 0.0, 2),
    }


class TextStage:
    def __init__(self, encoders: EncoderConfig, runtime: RuntimeConfig):
        from dynrec.encoders.text import TextEncoder

        self.encoder = TextEncoder.from_config(encoders, runtime)

    def __call__(self, batch: Batch) -> Batch:
        return with_text(hashed(batch), self.encoder)


class ImageFusionStage:
    """Images, then fusion, in one actor. Fusion is a small graph: an actor of its own cost a
    process start, its imports and one more hop per block. It runs the checkpoint's exported
    fusion graph when there is one (no torch import: on 2 cores that import was most of a fusion
    actor's CPU), else loads the checkpoint."""

    def __init__(self, encoders: EncoderConfig, runtime: RuntimeConfig, model_path: str, manifest: ModelManifest,
                 behaviour: dict[str, np.ndarray], default_behaviour):
        from dynrec.encoders.image import ImageEncoder
        from dynrec.models.runtime import ModelRuntime

        self.encoder = ImageEncoder.from_config(encoders, runtime)
        self.runtime = ModelRuntime.exported(manifest, runtime)
        if self.runtime is None:
            from dynrec.models.model import load_model

            self.runtime = ModelRuntime(load_model(model_path)[0], runtime)
        self.item_index = {item_id: i for i, item_id in enumerate(manifest.item_ids)}
        self.behaviour, self.default_behaviour = behaviour, default_behaviour

    def __call__(self, batch: Batch) -> Batch:
        return fused(with_images(batch, self.encoder), self.runtime, self.item_index, self.behaviour, self.default_behaviour)


def catalogue_parquet(config: DynrecConfig) -> Path:
    """The configured source's items as Parquet (the pipeline's input), written on demand."""
    path = config.paths.catalogue_items(config.source.label)
    dataset = load_source(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".items.{os.getpid()}.parquet")
    pq.write_table(dataset.items, temp)
    os.replace(temp, path)
    return path


def behaviour_snapshot(config: DynrecConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    dataset = load_source(config)
    created_at = dataset.items["created_at"].cast("int64").fill_null(-1).to_numpy()
    _, by_item, empty = latest_behaviour(Interactions.from_dataset(dataset), created_at, config.behaviour)
    return by_item, empty


def model_path_for(config: DynrecConfig) -> Path:
    path = config.paths.model(config.run_name)
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}: run `dynrec train` with this config first")
    return path


def encode_catalog(
    config: DynrecConfig,
    items_path: str | Path | None = None,
    model_path: str | Path | None = None,
    output: str | Path | None = None,
    full: bool = False,
) -> dict[str, Any]:
    """Run the pipeline; returns counts, timing and where the embeddings were written."""
    from dynrec.artifacts.prepare import ensure_manifest, with_text_model

    items_path = Path(items_path) if items_path else catalogue_parquet(config)
    model_path = Path(model_path) if model_path else model_path_for(config)
    output = Path(output) if output else config.paths.embeddings(config.run_name)
    manifest = ensure_manifest(config, model_path)
    config = with_text_model(config, model_path)  # a model with a tuned text encoder reads its vectors
    model_version = manifest.fingerprint
    behaviour, default_behaviour = behaviour_snapshot(config)

    previous = pq.read_table(output) if output.is_file() and not full else None
    unchanged = frozenset()
    if previous is not None:
        current = np.array(previous["model_version"].to_pylist(), dtype=object) == model_version
        ids, hashes = previous["item_id"].to_pylist(), previous["content_hash"].to_pylist()
        unchanged = frozenset((i, h) for i, h, ok in zip(ids, hashes, current) if ok)

    print(f"encoders: {chosen_path(config.runtime)}", flush=True)
    connect_ray()
    resources = stage_resources(ray.cluster_resources())
    stage_runtime = {name: _with_threads(config.runtime, r.threads) for name, r in resources.items()}
    started = time.perf_counter()
    items = pq.read_table(items_path, columns=ITEM_COLUMNS)
    if unchanged:
        items = items.filter(pc.is_in(items["item_id"], value_set=changed_item_ids(items_path, unchanged)))
    encoded = None
    if items.num_rows:  # the encoder pools start only when there is something to encode
        blocks = longest_text_first(items, TEXT_BATCH_ROWS)
        out = (
            ray.data.from_arrow(blocks).map_batches(
                TextStage, fn_constructor_args=(config.encoders, stage_runtime["text"]),
                batch_size=None, **pool_arguments(resources["text"], len(blocks)),
            )
            .map_batches(  # a whole text block per call: the image encoder decodes its next batch while one runs
                ImageFusionStage,
                fn_constructor_args=(config.encoders, stage_runtime["image"], str(model_path), manifest, behaviour,
                                     default_behaviour),
                batch_size=None, **pool_arguments(resources["image"], len(blocks)),
            )
        )
        # the driver writes the merged file anyway, so the blocks come straight back, not through a staging folder
        encoded = _plain(pa.concat_tables(ray.get(out.to_arrow_refs())))
    seconds = time.perf_counter() - started
    table = _merge(items_path, previous, encoded, unchanged)
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    pq.write_table(table, temp)
    os.replace(temp, output)
    n_encoded = 0 if encoded is None else encoded.num_rows
    if config.artifacts.uri and output.resolve().is_relative_to(config.home.resolve()):
        publish(config.home, str(output.parent.resolve().relative_to(config.home.resolve())), config.artifacts.uri)
        publish(config.home, onnx_folder(config), config.artifacts.uri)
    return {
        "items": table.num_rows,
        "encoded": n_encoded,
        "reused": table.num_rows - n_encoded,
        "model_version": model_version,
        "seconds": seconds,
        "items_per_s": n_encoded / seconds if seconds else 0.0,
        "output": str(output),
    }


def changed_item_ids(items_path: Path, unchanged: frozenset) -> pa.Array:
    """The ids of the items whose (item_id, content hash) is not in `unchanged`, hashed by Ray
    tasks (the hash reads every image)."""
    hashes = (
        ray.data.read_parquet(str(items_path))
        .select_columns(ITEM_COLUMNS)
        .map_batches(hashed, fn_kwargs={"unchanged": unchanged}, batch_size=256, num_cpus=0.25)
        .select_columns(["item_id"])
    )
    tables = [table for table in ray.get(hashes.to_arrow_refs()) if table.num_rows]
    return pa.concat_tables(tables)["item_id"].combine_chunks() if tables else pa.array([], pa.string())


def longest_text_first(items: pa.Table, rows_per_block: int) -> list[pa.Table]:
    """The items in blocks of `rows_per_block`, by title and description length, longest first.

    The text encoder sorts each call's texts by token length before it batches them, so a block
    of similar lengths pads about as little as a sort of the whole catalogue; sorting in the
    driver, on the text columns alone, costs milliseconds where a sort in Ray Data shuffled every
    row (7 s of a 35-s job on ML-1M). Longest first, so the blocks left at the end are the quick
    ones and the pools finish together.
    """
    length = pc.add(pc.fill_null(pc.utf8_length(items["title"]), 0), pc.fill_null(pc.utf8_length(items["text"]), 0))
    ordered = items.take(pc.sort_indices(length, sort_keys=[("", "descending")]))
    return [ordered.slice(start, rows_per_block) for start in range(0, ordered.num_rows, rows_per_block)]


def _with_threads(runtime: RuntimeConfig, threads: int) -> RuntimeConfig:
    """The runtime settings as given (precision and all), with the stage's threads where none are set."""
    return dataclasses.replace(runtime, threads=runtime.threads or threads)


def pool_arguments(resources: StageResources, blocks: int | None = None) -> dict[str, Any]:
    """Ray Data's pool arguments; no more actors than `blocks`, the most that can have work (an
    idle actor still pays its start-up)."""
    return {
        "compute": ray.data.ActorPoolStrategy(size=min(resources.concurrency, blocks or resources.concurrency)),
        "num_cpus": resources.num_cpus,
        "num_gpus": resources.num_gpus or None,
    }


VECTOR_COLUMNS = ("text_embedding", "image_embedding", "embedding")


def _plain(table: pa.Table) -> pa.Table:
    """Ray Data's tensor extension columns as plain fixed-size float32 lists, so the file reads
    back the same with or without Ray."""
    for name in VECTOR_COLUMNS:
        column = table[name].combine_chunks()
        storage = column.storage if isinstance(column.type, pa.ExtensionType) else column
        values = storage.flatten().cast(pa.float32())
        dim = len(values) // max(len(storage), 1)
        fixed = pa.FixedSizeListArray.from_arrays(values, dim)
        table = table.set_column(table.schema.get_field_index(name), name, fixed)
    return table


def _merge(items_path: Path, previous: pa.Table | None, encoded: pa.Table | None, unchanged: frozenset) -> pa.Table:
    """One row per current catalogue item, in catalogue order: freshly encoded, else reused.
    Items no longer in the catalogue are dropped."""
    order = pq.read_table(items_path, columns=["item_id"])["item_id"].to_pylist()
    parts = []
    if previous is not None:
        keep = [(i, h) in unchanged for i, h in zip(previous["item_id"].to_pylist(), previous["content_hash"].to_pylist())]
        parts.append(previous.filter(pa.array(keep, pa.bool_())))
    if encoded is not None:
        parts.append(encoded.select(parts[0].column_names).cast(parts[0].schema) if parts else encoded)
    if not parts:
        raise ValueError(f"{items_path} has no items to encode")
    table = pa.concat_tables(parts)
    position = {item_id: i for i, item_id in enumerate(table["item_id"].to_pylist())}
    rows = [position[i] for i in order if i in position]
    return table.take(pa.array(rows, pa.int64()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML/JSON config file")
    parser.add_argument("--full", action="store_true", help="re-encode every item, not only changed ones")
    args = parser.parse_args(argv)
    summary = encode_catalog(DynrecConfig.load(args.config), full=args.full)
    print(summary)


if __name__ == "__main__":
    main()
