"""Training on a small real cut of ML-100k (ID + behaviour tokens, so no encoders are needed)."""

import numpy as np
import pytest
import torch

from dynrec.config import DynrecConfig
from dynrec.data import leave_one_out
from dynrec.models.model import Catalogue, load_model, save_model
from dynrec.models.training import SequenceTrainer


@pytest.fixture(scope="module")
def small(ml100k, ml100k_interactions):
    interactions = ml100k_interactions.select_users(np.arange(ml100k_interactions.n_users) < 150)
    split = leave_one_out(interactions)
    n = interactions.n_items
    catalogue = Catalogue.from_arrays(np.zeros((n, 4)), np.zeros(n, bool), np.zeros((n, 3)), np.zeros(n, bool))
    created_at = ml100k.items["created_at"].cast("int64").fill_null(-1).to_numpy()
    return split, catalogue, created_at


def config(epochs=4):
    cfg = DynrecConfig()
    cfg.model.modalities = ("id", "behaviour")
    cfg.model.dim, cfg.model.max_length = 32, 40
    cfg.behaviour.time_buckets = 4
    cfg.train.epochs, cfg.train.eval_every, cfg.train.batch_size = epochs, 1, 64
    cfg.train.learning_rate = 3e-3
    return cfg


def test_training_beats_the_untrained_start(small):
    split, catalogue, created_at = small
    trainer = SequenceTrainer(config(epochs=6), split, catalogue, created_at)
    untrained = trainer.validate()["ndcg@10"]
    reports = []
    best = trainer.fit(lambda report, _: reports.append(report), progress=False)
    assert [r.epoch for r in reports] == list(range(1, 7))
    assert reports[-1].loss < reports[0].loss
    assert best > untrained * 1.5
    assert trainer.validate()["ndcg@10"] == pytest.approx(best)  # the best weights are kept


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(small, tmp_path):
    split, catalogue, created_at = small
    straight = SequenceTrainer(config(epochs=2), split, catalogue, created_at)
    straight.fit(progress=False)

    first = SequenceTrainer(config(epochs=1), split, catalogue, created_at)
    first.fit(progress=False)
    torch.save(first.state_dict(), tmp_path / "trainer.pt")
    resumed = SequenceTrainer(config(epochs=2), split, catalogue, created_at)
    resumed.load_state_dict(torch.load(tmp_path / "trainer.pt", weights_only=False))
    assert resumed.epoch == 1
    resumed.fit(progress=False)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed.best_ndcg == straight.best_ndcg


def test_saved_model_scores_identically(small, tmp_path):
    split, catalogue, created_at = small
    trainer = SequenceTrainer(config(epochs=1), split, catalogue, created_at)
    trainer.fit(progress=False)
    save_model(tmp_path / "model.pt", trainer.model, split.train.item_ids, {"note": 1})
    model, item_ids, metrics = load_model(tmp_path / "model.pt")
    assert item_ids == list(split.train.item_ids) and metrics == {"note": 1}
    users = np.arange(5)
    before = trainer.scorer().score(split.train, users)
    trainer.model = model
    after = trainer.scorer().score(split.train, users)
    assert np.allclose(before, after, atol=1e-5)
