"""Encoding benchmark (DESIGN.md protocol): Ray Data vs a plain ONNX Runtime loop, ONNX vs torch
per exported model, int8 vs fp32 quality, and the item index at 1M items.

    .venv/bin/python -m bench.encode [--repeats 3] [--index-items 1000000] [--skip ray,index,...]

Uses the trained ML-1M model (`dynrec train --config configs/ml-1m.yaml`). Every ratio is taken
within one run; absolute times on this shared machine are weak evidence. Writes
bench/results/encode.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bench.common import machine, write_results
from dynrec.config import DynrecConfig, RuntimeConfig
from dynrec.onnx.export import parity

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ml-1m.yaml"
STEPS = ("ray", "latency", "int8", "index")


def latency_ms(fn, repeats: int = 30, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def catalogue_inputs(config: DynrecConfig):
    from dynrec.data import load_source
    from dynrec.encoders.content import item_text

    dataset = load_source(config.with_dataset("ml-1m"))
    rows = dataset.items.to_pylist()
    texts = [item_text(r["title"], r["categories"], r["text"]) for r in rows]
    return dataset, texts, [r["image"] for r in rows]


def plain_ort_loop(config: DynrecConfig, model_path: Path, batch, item_index, behaviour, default) -> float:
    """Seconds for one process to run the catalogue-encoding steps (dynrec.items.encoding, the Ray
    Data stages' own functions) over every item with ONNX Runtime (sessions exported beforehand, as
    the Ray Data actors find them), building the sessions included."""
    from dynrec.encoders.image import ImageEncoder
    from dynrec.encoders.text import TextEncoder
    from dynrec.items.encoding import encode_batch
    from dynrec.models.model import load_model
    from dynrec.models.runtime import ModelRuntime

    started = time.perf_counter()
    text_encoder = TextEncoder.from_config(config.encoders, config.runtime)
    image_encoder = ImageEncoder.from_config(config.encoders, config.runtime)
    runtime = ModelRuntime(load_model(model_path)[0], config.runtime)
    encode_batch(dict(batch), text_encoder, image_encoder, runtime, item_index, behaviour, default)
    return time.perf_counter() - started


def bench_ray(config: DynrecConfig, model_path: Path, repeats: int) -> dict:
    import ray

    from dynrec.items.encoding import batch_of
    from dynrec.models.model import load_model
    from training.encode_catalog import behaviour_snapshot, catalogue_parquet, encode_catalog

    dataset, _, _ = catalogue_inputs(config)
    item_ids = dataset.items["item_id"].to_pylist()
    batch = batch_of(dataset.items)
    behaviour, default = behaviour_snapshot(config)
    item_index = {item_id: i for i, item_id in enumerate(load_model(model_path)[1])}
    items_path = catalogue_parquet(config)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False)
    ray_s, plain_s = [], []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for repeat in range(repeats):  # interleaved, so drift in machine load hits both alike
                plain_s.append(plain_ort_loop(config, model_path, batch, item_index, behaviour, default))
                summary = encode_catalog(config, items_path, model_path, Path(folder) / f"run{repeat}.parquet", full=True)
                ray_s.append(summary["seconds"])
                print(f"  repeat {repeat}: plain {plain_s[-1]:.1f} s, Ray Data {ray_s[-1]:.1f} s", flush=True)
            written = pq.read_table(Path(folder) / "run0.parquet")
    finally:
        ray.shutdown()
    n = len(item_ids)
    return {
        "items": n,
        "rows_written": written.num_rows,
        "ray_data_s": ray_s,
        "plain_ort_s": plain_s,
        "ray_data_items_per_s": n / statistics.median(ray_s),
        "plain_ort_items_per_s": n / statistics.median(plain_s),
        "ray_data_vs_plain": statistics.median(plain_s) / statistics.median(ray_s),
    }


def bench_latency(config: DynrecConfig, model_path: Path) -> dict:
    """Median ms per call, torch eager vs ONNX Runtime, same thread count, batch 1 and 32."""
    from dynrec.encoders.image import ImageEncoder
    from dynrec.encoders.text import TextEncoder
    from dynrec.models.model import load_model
    from dynrec.models.runtime import ModelRuntime

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    backends = {"torch": RuntimeConfig(backend="torch"), "onnx": RuntimeConfig("onnx", threads=threads, onnx_dir=config.runtime.onnx_dir)}
    _, texts, images = catalogue_inputs(config)
    model = load_model(model_path)[0]
    results: dict[str, dict] = {}
    rng = np.random.default_rng(0)
    for backend, runtime in backends.items():
        text_encoder = TextEncoder.from_config(config.encoders, runtime)
        image_encoder = ImageEncoder.from_config(config.encoders, runtime)
        models = ModelRuntime(model, runtime)
        pixels = np.stack([image_encoder.preprocess(image) for image in images[:64] if image][:32])
        dim = models.dim
        for batch in (1, 32):
            tokens = text_encoder.tokenize(texts[100 : 100 + batch])
            fusion_inputs = {
                "item_index": np.arange(batch),
                "text": rng.standard_normal((batch, 384)).astype(np.float32),
                "text_mask": np.ones(batch, bool),
                "image": rng.standard_normal((batch, 1280)).astype(np.float32),
                "image_mask": np.ones(batch, bool),
                "behaviour": rng.standard_normal((batch, models.input_dims.get("behaviour", 1))).astype(np.float32),
            }
            windows = {
                "items": rng.standard_normal((batch, 200, dim)).astype(np.float32),
                "event_types": np.zeros((batch, 200), np.int64),
                "gaps": np.full((batch, 200), 3600.0, np.float32),
                "values": np.full((batch, 200), 4.0, np.float32),
                "lengths": np.full(batch, 200, np.int64),
            }
            calls = {
                "text": lambda: text_encoder.embed(tokens["input_ids"], tokens["attention_mask"]),
                "image": lambda: image_encoder.embed(pixels[:batch]),
                "fusion": lambda: models.embed_items(**fusion_inputs),
                "user": lambda: models.embed_users(**windows),
            }
            for name, call in calls.items():
                results.setdefault(name, {})[f"{backend}_b{batch}_ms"] = latency_ms(call, repeats=30 if batch == 1 else 10)
    for name, row in results.items():
        for batch in (1, 32):
            row[f"speedup_b{batch}"] = row[f"torch_b{batch}_ms"] / row[f"onnx_b{batch}_ms"]
    return results


def bench_int8(config: DynrecConfig, model_path: Path) -> dict:
    """int8 text vectors against fp32 over the whole catalogue, and the test NDCG@10 of the
    trained model when its catalogue is encoded with int8 instead of fp32."""
    from dynrec.encoders.behaviour import time_bucket_edges
    from dynrec.encoders.content import encode_catalogue
    from dynrec.encoders.text import TextEncoder
    from dynrec.eval.evaluate import evaluate
    from dynrec.models.inputs import prepare_inputs
    from dynrec.models.model import Catalogue, load_model
    from dynrec.models.training import SequenceScorer

    _, texts, _ = catalogue_inputs(config)
    fp32 = TextEncoder.from_config(config.encoders, RuntimeConfig("onnx", onnx_dir=config.runtime.onnx_dir)).encode(texts, progress=True)
    int8_runtime = RuntimeConfig("onnx", int8=True, onnx_dir=config.runtime.onnx_dir)
    int8 = TextEncoder.from_config(config.encoders, int8_runtime).encode(texts, progress=True)
    cosine = parity(fp32, int8)
    cosines = (fp32 * int8).sum(axis=1)

    inputs = prepare_inputs(config)
    model = load_model(model_path)[0]
    edges = time_bucket_edges(inputs.split.train.timestamps, config.behaviour.time_buckets)
    split = inputs.split

    def test_ndcg(catalogue: Catalogue) -> float:
        scorer = SequenceScorer(model, catalogue, inputs.created_at, config, edges)
        return evaluate(scorer, split.test_input, split.test_targets, k=config.eval.k)["ndcg@10"]

    content = encode_catalogue(inputs.dataset.items, config.paths.cache, config=config.encoders, runtime=int8_runtime)
    ndcg_fp32 = test_ndcg(inputs.catalogue)
    ndcg_int8 = test_ndcg(Catalogue.from_arrays(content.text, content.text_mask, content.image, content.image_mask))
    return {
        "text_int8_min_cosine": cosine["min_cosine"],
        "text_int8_mean_cosine": float(cosines.mean()),
        "text_int8_p01_cosine": float(np.quantile(cosines, 0.01)),
        "ndcg@10_fp32": ndcg_fp32,
        "ndcg@10_int8": ndcg_int8,
        "int8_ndcg_delta": (ndcg_int8 - ndcg_fp32) / ndcg_fp32,
    }


def clustered_unit_vectors(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Item-like vectors: unit-norm points scattered around topic centres (real embeddings cluster)."""
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centres[rng.integers(0, len(centres), stop - start)]
        block = block + 0.5 * rng.standard_normal(block.shape).astype(np.float32)
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def bench_index(n: int, dim: int = 128, queries: int = 200, k: int = 100) -> dict:
    from dynrec.index import HnswIndex, IndexConfig

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    vectors = clustered_unit_vectors(n, dim, rng, centres)
    probes = clustered_unit_vectors(queries, dim, rng, centres)
    ids = [str(i) for i in range(n)]
    index = HnswIndex(dim, IndexConfig(kind="hnsw"))
    started = time.perf_counter()
    for start in range(0, n, 100_000):
        index.upsert(ids[start : start + 100_000], vectors[start : start + 100_000])
        print(f"  index: {min(n, start + 100_000):,}/{n:,} items ({time.perf_counter() - started:.0f} s)", flush=True)
    build_s = time.perf_counter() - started
    search_ms, recalls, exact_ms = [], [], []
    for probe in probes:
        began = time.perf_counter()
        found, _ = index.search(probe, k)
        search_ms.append(1000 * (time.perf_counter() - began))
        began = time.perf_counter()
        truth = np.argpartition(-(vectors @ probe), k)[:k]
        exact_ms.append(1000 * (time.perf_counter() - began))
        recalls.append(len({int(i) for i in found} & set(truth.tolist())) / k)
    upsert_ms = []
    for _ in range(500):
        item = int(rng.integers(0, n))
        vector = clustered_unit_vectors(1, dim, rng, centres)
        began = time.perf_counter()
        index.upsert([ids[item]], vector)
        upsert_ms.append(1000 * (time.perf_counter() - began))
    return {
        "index_items": n,
        "index_build_s": build_s,
        "index_1m_p50_ms": float(np.median(search_ms)),
        "index_1m_p99_ms": float(np.quantile(search_ms, 0.99)),
        "index_1m_recall_at_100": float(np.mean(recalls)),
        "index_exact_scan_p50_ms": float(np.median(exact_ms)),
        "index_upsert_p50_ms": float(np.median(upsert_ms)),
        "index_upsert_p99_ms": float(np.quantile(upsert_ms, 0.99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--index-items", type=int, default=1_000_000)
    parser.add_argument("--skip", default="", help=f"comma-separated steps to skip: {','.join(STEPS)}")
    args = parser.parse_args()
    config = DynrecConfig.load(args.config)
    model_path = config.paths.model(config.run_name)
    if not model_path.is_file():
        parser.error(f"no trained model at {model_path}: run `dynrec train --config {args.config}` first")
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {"machine": machine(), "model": str(model_path)}
    if "latency" not in skip:
        print("ONNX Runtime vs torch eager, per model ...", flush=True)
        results["latency"] = bench_latency(config, model_path)
        results["text_onnx_speedup_b1"] = results["latency"]["text"]["speedup_b1"]
        results["image_onnx_speedup_b1"] = results["latency"]["image"]["speedup_b1"]
    if "int8" not in skip:
        print("int8 vs fp32 ...", flush=True)
        results.update(bench_int8(config, model_path))
    if "ray" not in skip:
        print(f"Ray Data vs a plain ONNX Runtime loop, {args.repeats} repeats ...", flush=True)
        results.update(bench_ray(config, model_path, args.repeats))
    if "index" not in skip:
        print(f"HNSW index at {args.index_items:,} items ...", flush=True)
        results.update(bench_index(args.index_items))
    path = write_results("encode", results, merge=True)
    print(f"\n{'figure':<28} {'value':>12}")
    for key in (
        "ray_data_items_per_s", "plain_ort_items_per_s", "ray_data_vs_plain", "text_onnx_speedup_b1",
        "image_onnx_speedup_b1", "text_int8_min_cosine", "int8_ndcg_delta", "index_1m_p50_ms",
        "index_1m_recall_at_100", "index_upsert_p50_ms",
    ):
        if key in results:
            print(f"{key:<28} {results[key]:>12.4f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
