"""Every ONNX export against its torch source, on fresh random and on real ML inputs, and the
`runtime.backend` switch giving the same rankings."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dynrec.config import EncoderConfig, ModelConfig, RuntimeConfig
from dynrec.encoders.content import item_text
from dynrec.encoders.image import ImageEncoder
from dynrec.encoders.text import TextEncoder
from dynrec.models.model import DynrecModel, event_type_codes, make_batch
from dynrec.models.runtime import ModelRuntime
from dynrec.onnx.export import parity
from dynrec.onnx.session import OnnxSession, pick_providers

FP32_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("onnx"))
    # fp32 precision: `runtime.backend` and `runtime.int8` pick the encoders' paths only there
    return {
        "torch": RuntimeConfig(backend="torch", precision="fp32"),
        "onnx": RuntimeConfig(backend="onnx", onnx_dir=folder, precision="fp32"),
        "int8": RuntimeConfig(backend="onnx", int8=True, onnx_dir=folder, precision="fp32"),
    }


@pytest.fixture(scope="module")
def titles(ml1m):
    rows = ml1m.items.slice(0, 24).to_pylist()
    return [item_text(r["title"], r["categories"], r["text"]) for r in rows]


@pytest.fixture(scope="module")
def text_encoders(runtimes):
    return {name: TextEncoder.from_config(EncoderConfig(), runtime) for name, runtime in runtimes.items()}


def test_sessions_pick_an_available_provider_and_pin_threads(text_encoders):
    session = text_encoders["onnx"].session
    assert isinstance(session, OnnxSession) and session.providers[0] == pick_providers()[0]
    assert session.session.get_session_options().intra_op_num_threads >= 1
    pinned = OnnxSession(session.path, threads=1)
    assert pinned.session.get_session_options().intra_op_num_threads == 1


def test_text_export_matches_torch_on_real_and_random_tokens(text_encoders, titles):
    torch_encoder, onnx_encoder = text_encoders["torch"], text_encoders["onnx"]
    real = torch_encoder.tokenize(titles)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, torch_encoder.tokenizer.get_vocab_size(), size=(5, 37))
    mask = (np.arange(37)[None, :] < rng.integers(3, 38, size=(5, 1))).astype(np.int64)
    for batch in (real, {"input_ids": ids, "attention_mask": mask}):
        expected = torch_encoder.embed(batch["input_ids"], batch["attention_mask"])
        got = onnx_encoder.embed(batch["input_ids"], batch["attention_mask"])
        assert parity(expected, got)["max_abs_diff"] <= FP32_TOLERANCE


def test_text_int8_keeps_cosine_above_099(text_encoders, titles):
    assert text_encoders["int8"].session.path.name.endswith(".int8.onnx")
    assert text_encoders["int8"].cache_name.endswith("-int8")  # never mixed with fp32 vectors in the cache
    result = parity(text_encoders["torch"].encode(titles), text_encoders["int8"].encode(titles))
    assert result["min_cosine"] >= 0.99
    assert result["max_abs_diff"] > 0  # it really is a different (quantised) model


def test_image_export_matches_torch_on_posters_and_random_pixels(runtimes, ml1m):
    torch_encoder = ImageEncoder.from_config(EncoderConfig(), runtimes["torch"])
    onnx_encoder = ImageEncoder.from_config(EncoderConfig(), runtimes["onnx"])
    posters = [image["path"] for image in ml1m.items["image"].to_pylist()[:40] if image][:3]
    real = np.stack([torch_encoder.preprocess(p) for p in posters])
    random = np.random.default_rng(1).uniform(-1, 1, size=(2, 3, 224, 224)).astype(np.float32)
    for pixels in (real, random):
        assert parity(torch_encoder.embed(pixels), onnx_encoder.embed(pixels))["max_abs_diff"] <= FP32_TOLERANCE


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DynrecModel(ModelConfig(dim=32, max_length=50), n_items=60, text_dim=384, image_dim=1280, behaviour_dim=8).eval()


@pytest.fixture(scope="module")
def model_runtimes(model, runtimes):
    return {name: ModelRuntime(model, runtimes[name]) for name in ("torch", "onnx")}


def catalogue_inputs(text_encoder, titles, n=60, seed=2):
    """Real text vectors for the first items, random image and behaviour features, some masked,
    and a few items with no ID embedding (new items)."""
    rng = np.random.default_rng(seed)
    text = np.resize(text_encoder.encode(titles), (n, 384))
    return {
        "item_index": np.where(np.arange(n) % 9 == 8, -1, np.arange(n)),
        "text": text,
        "text_mask": np.arange(n) % 5 != 0,
        "image": rng.standard_normal((n, 1280)).astype(np.float32),
        "image_mask": np.arange(n) % 3 != 0,
        "behaviour": rng.standard_normal((n, 8)).astype(np.float32),
    }


def test_fusion_export_matches_torch(model_runtimes, text_encoders, titles):
    inputs = catalogue_inputs(text_encoders["torch"], titles)
    expected = model_runtimes["torch"].embed_items(**inputs)
    assert expected.shape == (60, 32)
    for n in (60, 1, 7):  # dynamic item axis
        part = {k: v[:n] for k, v in inputs.items()}
        assert parity(expected[:n], model_runtimes["onnx"].embed_items(**part))["max_abs_diff"] <= FP32_TOLERANCE


def user_windows(interactions, table: np.ndarray, users: np.ndarray, max_length: int):
    codes = event_type_codes(interactions, ModelConfig().event_types)
    batch = make_batch(interactions, users, max_length, codes)
    return {
        "items": table[batch.items.numpy() % len(table)],
        "event_types": batch.event_types.numpy(),
        "gaps": batch.gaps.numpy(),
        "values": batch.values.numpy(),
        "lengths": batch.lengths.numpy(),
    }


def test_user_export_matches_torch_on_real_histories(model_runtimes, ml100k_interactions):
    rng = np.random.default_rng(3)
    table = rng.standard_normal((60, 32)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    for users, length in ((np.arange(8), 50), (np.array([11]), 3)):  # dynamic batch and sequence axes
        windows = user_windows(ml100k_interactions, table, users, length)
        expected = model_runtimes["torch"].embed_users(**windows)
        assert parity(expected, model_runtimes["onnx"].embed_users(**windows))["max_abs_diff"] <= FP32_TOLERANCE


def test_backend_switch_gives_the_same_rankings(model_runtimes, text_encoders, titles, ml100k_interactions):
    inputs = catalogue_inputs(text_encoders["torch"], titles)
    rankings = {}
    for name, runtime in model_runtimes.items():
        table = runtime.embed_items(**inputs)
        users = runtime.embed_users(**user_windows(ml100k_interactions, table, np.arange(30), 50))
        rankings[name] = np.argsort(-(users @ table.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rankings["torch"], rankings["onnx"])
    neighbours = {}
    for name in ("torch", "onnx"):
        vectors = text_encoders[name].encode(titles)
        neighbours[name] = np.argsort(-(vectors @ vectors.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(neighbours["torch"], neighbours["onnx"])


def test_exports_are_reused_and_follow_the_weights(model, runtimes, tmp_path):
    runtime = RuntimeConfig(backend="onnx", onnx_dir=str(tmp_path))
    first = ModelRuntime(model, runtime)
    stamp = Path(first.fusion_session.path).stat().st_mtime_ns
    assert ModelRuntime(model, runtime).fusion_session.path == first.fusion_session.path
    assert Path(first.fusion_session.path).stat().st_mtime_ns == stamp  # reused, not re-exported
    changed = DynrecModel(ModelConfig(dim=32, max_length=50), 60, 384, 1280, 8).eval()
    assert ModelRuntime(changed, runtime).fusion_session.path != first.fusion_session.path


def test_user_steps_match_a_full_encode_of_the_window_on_both_backends(model_runtimes, ml100k_interactions):
    """A window encoded once and then stepped event by event (and a few events at once) gives, at
    each event, the full user graph's embedding of the window so far: on ONNX as on torch."""
    rng = np.random.default_rng(4)
    table = rng.standard_normal((60, 32)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    window = user_windows(ml100k_interactions, table, np.array([0]), 50)  # ML-100k user 1: a full window
    assert window["lengths"][0] == 50
    inputs = [window[k][0] for k in ("items", "event_types", "gaps", "values")]
    prefixes = [np.repeat(v[None], 50, axis=0) for v in inputs]  # row n, right-padded: the first n + 1 events
    full = {name: runtime.embed_users(*prefixes, np.arange(1, 51)) for name, runtime in model_runtimes.items()}
    for name, runtime in model_runtimes.items():
        past = np.zeros((runtime.user_layers, 2, 0, 32), np.float32)
        for start, end in [(0, 20)] + [(n, n + 1) for n in range(20, 45)] + [(45, 48), (48, 50)]:
            embedding, present = runtime.step_user(*(v[start:end] for v in inputs), past)
            assert present.shape == (2, 2, end - start, 32)  # layers, keys and values, events, dim
            for reference in (name, "torch"):
                assert np.abs(embedding - full[reference][end - 1]).max() <= FP32_TOLERANCE, (name, reference, end)
            past = np.concatenate([past, present], axis=2)


def test_the_step_graph_is_exported_and_loaded_with_the_others(model, tmp_path):
    """Serving loads the step graph from the exports alone, and a checkpoint whose step graph is
    missing (exported before it existed) counts as not exported, so it is exported again."""
    from dynrec.models.runtime import ModelManifest, exported_graphs

    config = RuntimeConfig(backend="onnx", onnx_dir=str(tmp_path))
    runtime = ModelRuntime(model, config)
    graphs = exported_graphs(config, runtime.fingerprint)
    assert [p.name for p in graphs] == [f"{g}-{runtime.fingerprint}.onnx" for g in ("fusion", "user_embed", "user_step")]
    manifest = ModelManifest("", runtime.fingerprint, runtime.dim, runtime.input_dims, [])
    served = ModelRuntime.exported(manifest, config)
    assert served.model is None and Path(served.step_session.path) == graphs[2]
    feeds = user_step_feeds(runtime)
    for got, expected in zip(served.step_user(**feeds), ModelRuntime(model, RuntimeConfig(backend="torch")).step_user(**feeds)):
        assert np.abs(got - expected).max() <= FP32_TOLERANCE
    graphs[2].unlink()
    assert exported_graphs(config, runtime.fingerprint) is None and ModelRuntime.exported(manifest, config) is None
    assert ModelRuntime(model, config).step_session is not None and graphs[2].is_file()


def test_the_step_graph_stays_fp32_under_int8(model, runtimes):
    """int8 quantises activations per call, so a stepped state would round differently from the
    window's encode: the step graph opts out and keeps matching the fp32 model."""
    quantised = ModelRuntime(model, runtimes["int8"])
    assert quantised.user_session.path.name.endswith(".int8.onnx")
    assert quantised.step_session.path.name == f"user_step-{quantised.fingerprint}.onnx"
    feeds = user_step_feeds(quantised)
    for got, expected in zip(quantised.step_user(**feeds), ModelRuntime(model, RuntimeConfig(backend="torch")).step_user(**feeds)):
        assert np.abs(got - expected).max() <= FP32_TOLERANCE


def user_step_feeds(runtime, past=7, new=2):
    rng = np.random.default_rng(past)
    return {"items": rng.standard_normal((new, runtime.dim)).astype(np.float32),
            "event_types": np.zeros(new, np.int64), "gaps": rng.uniform(0, 1e5, new).astype(np.float32),
            "values": np.full(new, 4.0, np.float32),
            "past": rng.standard_normal((runtime.user_layers, 2, past, runtime.dim)).astype(np.float32)}
