"""Tuning MiniLM's top layers with the recommender (model.text_layers), on a real cut of ML-100k:
the tower starts where the frozen encoder is, training moves it, and the served encoder (its
folder, exported to ONNX Runtime) gives the vectors training ended with."""

import numpy as np
import pytest
import torch

from dynrec.artifacts.prepare import with_text_model
from dynrec.config import DynrecConfig, RuntimeConfig
from dynrec.data import leave_one_out
from dynrec.encoders.content import catalogue_texts
from dynrec.encoders.text import TextEncoder, packaged_text_model_path
from dynrec.models.model import Catalogue, load_model, save_model
from dynrec.models.runtime import ModelRuntime
from dynrec.models.text_tower import LowerTextStates, TextTower
from dynrec.models.training import SequenceTrainer



def fp32_onnx() -> RuntimeConfig:
    """Built inside each test: its export folder is then the test session's home."""
    return RuntimeConfig("onnx", precision="fp32")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def cut(ml100k, ml100k_interactions):
    """80 users, and the texts of the items they touched (the rest of the catalogue has none here)."""
    interactions = ml100k_interactions.select_users(np.arange(ml100k_interactions.n_users) < 80)
    touched = np.zeros(interactions.n_items, bool)
    touched[interactions.items] = True
    texts = [t if keep else "" for t, keep in zip(catalogue_texts(ml100k.items), touched)]
    return leave_one_out(interactions), texts, ml100k.items["created_at"].cast("int64").fill_null(-1).to_numpy()


def test_the_tower_starts_with_the_frozen_encoders_vectors(cut, tmp_path):
    texts = [t for t in cut[1] if t][:24]
    frozen = TextEncoder(runtime=RuntimeConfig("torch", precision="fp32")).encode(texts)
    tower = TextTower(2, packaged_text_model_path())
    lower = LowerTextStates.compute(tower, texts, 128)
    assert cosines(lower.vectors(tower).numpy(), frozen).min() > 0.9999  # float16 lower states cost nothing visible


def test_tuned_layers_move_the_text_vectors_and_the_served_export_gives_the_trained_ones(cut, tmp_path):
    split, texts, created_at = cut
    rows = np.flatnonzero([bool(t) for t in texts])
    frozen = np.zeros((len(texts), TextEncoder.dim), np.float32)
    frozen[rows] = TextEncoder(runtime=fp32_onnx()).encode([texts[i] for i in rows])
    catalogue = Catalogue.from_arrays(frozen, np.array([bool(t) for t in texts]), np.zeros((len(texts), 3)), np.zeros(len(texts), bool))
    config = DynrecConfig()
    config.model.modalities, config.model.dim, config.model.max_length, config.model.text_layers = ("id", "text"), 32, 30, 1
    config.train.epochs, config.train.eval_every, config.train.batch_size = 2, 2, 40
    config.train.text_tune_items, config.train.text_tune_lr = 16, 1e-3  # large steps, so two epochs move it
    config.train.min_improvement = 0.0
    trainer = SequenceTrainer(config, split, catalogue, created_at, texts=texts)
    before = {n: p.detach().clone() for n, p in trainer.model.text_tower.named_parameters()}
    trainer.fit(progress=False)
    moved = [n for n, p in trainer.model.text_tower.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) == len(before)  # every tuned weight learned
    trained = trainer.catalogue.text.numpy()[rows]
    assert cosines(trained, frozen[rows]).mean() < 0.999  # the text vectors moved...
    assert np.array_equal(catalogue.text.numpy(), frozen)  # ...in the trainer's copy, not the caller's catalogue

    path = tmp_path / "run" / "model.pt"
    path.parent.mkdir()
    save_model(path, trainer.model, [str(i) for i in range(split.train.n_items)])
    model, _, _ = load_model(path)
    for name, tensor in model.text_tower.state_dict().items():
        assert torch.equal(tensor, trainer.model.text_tower.state_dict()[name])
    ModelRuntime(model).manifest(path, []).write(path)  # what ensure_manifest does: writes the tuned folder too
    served_config = with_text_model(config, path)
    folder = served_config.encoders.text_model_path
    assert folder.startswith(str(path.parent / "all-MiniLM-L6-v2-tuned-"))
    served = TextEncoder.from_config(served_config.encoders, fp32_onnx())
    assert served.session is not None and served.cache_name != TextEncoder(runtime=fp32_onnx()).cache_name
    assert cosines(served.encode([texts[i] for i in rows]), trained).min() > 0.999
