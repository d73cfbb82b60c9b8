"""Training on a small real cut of ML-100k (ID + behaviour tokens, so no encoders are needed)."""

import dataclasses

import numpy as np
import pytest
import torch

from dynrec.config import DynrecConfig
from dynrec.data import leave_one_out
from dynrec.models.model import Catalogue, load_model, save_model
from dynrec.models.training import SequenceTrainer, autocast_dtype


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
    cfg = config(epochs=6)
    cfg.train.item_init = "random"  # the loop's own learning, from a start that knows nothing (see test_item_init)
    trainer = SequenceTrainer(cfg, split, catalogue, created_at)
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


def test_patience_counts_optimizer_steps_as_well_as_epochs(small, monkeypatch):
    """On small data an epoch is a few steps: early stopping waits for `train.patience_steps` too."""
    split, catalogue, created_at = small
    cfg = config(epochs=20)
    cfg.train.patience, cfg.train.patience_steps = 1, 6
    trainer = SequenceTrainer(cfg, split, catalogue, created_at)
    monkeypatch.setattr(trainer, "validate", lambda: {"ndcg@10": 0.1})  # best at the first evaluation, never better
    trainer.fit(progress=False)
    steps_per_epoch = -(-len(trainer.users) // cfg.train.batch_size)
    assert trainer.best_step == steps_per_epoch
    assert trainer.stopped_by == "early_stopping"
    # one epoch of patience alone would have stopped after epoch 2
    assert trainer.epoch == 1 + -(-6 // steps_per_epoch)
    assert trainer.step - trainer.best_step >= 6
    timing = trainer.timing()
    assert timing["stopped_by"] == "early_stopping" and timing["steps"] == trainer.step
    assert 0 < timing["best_s"] < timing["training_s"]  # the best came at the first evaluation, of several


def test_learning_rate_halves_after_half_the_patience_without_a_better_score(small, monkeypatch):
    split, catalogue, created_at = small
    cfg = config(epochs=12)
    cfg.train.patience, cfg.train.patience_steps = 4, 0
    trainer = SequenceTrainer(cfg, split, catalogue, created_at)
    scores = iter([0.1, 0.1, 0.2, 0.2, 0.2, 0.3] + [0.3] * 6)  # better at epochs 1, 3 and 6
    monkeypatch.setattr(trainer, "validate", lambda: {"ndcg@10": next(scores)})
    rates = []
    trainer.fit(lambda report, t: rates.append(t.optimizer.param_groups[0]["lr"]), progress=False)
    lr = cfg.train.learning_rate
    # two epochs (half of 4) without a better score lower it; a better score restarts the count
    assert rates == pytest.approx([lr] * 4 + [lr / 2] * 3 + [lr / 4] * 3)
    assert trainer.stopped_by == "early_stopping" and trainer.epoch == 10


def test_creeping_gains_keep_the_best_weights_but_not_the_patience(small, monkeypatch):
    split, catalogue, created_at = small
    cfg = config(epochs=12)
    cfg.train.patience, cfg.train.patience_steps, cfg.train.min_improvement = 4, 0, 0.01
    trainer = SequenceTrainer(cfg, split, catalogue, created_at)
    scores = iter([0.1 + 0.0001 * n for n in range(12)])  # better every time, by 0.1%
    monkeypatch.setattr(trainer, "validate", lambda: {"ndcg@10": next(scores)})
    trainer.fit(progress=False)
    # four epochs of gains under 1% end the run; the weights kept are those of the last, best epoch
    assert trainer.stopped_by == "early_stopping" and trainer.epoch == 5
    assert trainer.best_ndcg == pytest.approx(0.1004) and trainer.best_step == trainer.step


def test_a_run_that_uses_every_epoch_says_so(small):
    split, catalogue, created_at = small
    trainer = SequenceTrainer(config(epochs=1), split, catalogue, created_at)
    trainer.fit(progress=False)
    assert trainer.stopped_by == "epochs" and trainer.step == -(-len(trainer.users) // 64)


def test_id_only_items_start_apart():
    """At initialisation random items must not share one direction: with a mean cosine of 0.67 the
    first logits were near uniform and the ID-only model sat at ln(N) loss for epochs."""
    cfg = DynrecConfig().model
    cfg.modalities = ("id",)
    torch.manual_seed(0)
    from dynrec.models.model import DynrecModel

    model = DynrecModel(cfg, 500, 4, 3, 5).eval()
    with torch.no_grad():
        table = model.fusion(torch.arange(500))
    cosine = table @ table.T
    off_diagonal = cosine[~torch.eye(500, dtype=torch.bool)]
    assert off_diagonal.mean().abs() < 0.2


def test_a_model_saved_before_the_learned_scale_still_loads(small, tmp_path):
    split, catalogue, created_at = small
    trainer = SequenceTrainer(config(epochs=1), split, catalogue, created_at)
    save_model(tmp_path / "model.pt", trainer.model, split.train.item_ids)
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    del saved["state_dict"]["log_scale"]
    torch.save(saved, tmp_path / "model.pt")
    model, _, _ = load_model(tmp_path / "model.pt")
    assert torch.isfinite(model.log_scale)


def test_length_groups_give_the_loss_and_gradients_of_one_padded_batch(small):
    """Grouping a batch by length only drops padding: every real position keeps its target."""
    from dynrec.models.model import make_batch

    split, catalogue, created_at = small
    trainer = SequenceTrainer(config(), split, catalogue, created_at)
    trainer.model.eval()  # no dropout, so both passes see the same network
    batch = make_batch(split.train, trainer.users[:64], 40, trainer.type_codes, trainer.event_buckets, with_targets=True)
    assert len(set(batch.lengths.tolist())) > 4  # the cut holds histories of many lengths

    def loss_and_gradients(groups):
        trainer.model.zero_grad()
        loss = trainer.model(batch, catalogue, trainer.snapshots, 0, groups)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}

    padded_loss, padded_grads = loss_and_gradients(1)
    for groups in (3, 64, 200):
        loss, grads = loss_and_gradients(groups)
        assert loss == pytest.approx(padded_loss, rel=1e-5)
        assert grads.keys() == padded_grads.keys()
        for name, grad in grads.items():
            assert torch.allclose(grad, padded_grads[name], atol=1e-5), (groups, name)


def test_logits_in_row_blocks_give_the_loss_and_gradients_of_one_pass(small):
    """Taking the softmax a block of positions at a time changes where the sums happen, not the
    loss or its gradients, with or without behaviour snapshots and with sampled negatives."""
    from dynrec.models.model import make_batch

    split, catalogue, created_at = small
    for modalities, negatives in ((("id", "text", "behaviour"), 0), (("id", "text"), 0), (("id",), 20)):
        cfg = config()
        cfg.model.modalities = modalities
        trainer = SequenceTrainer(cfg, split, catalogue, created_at)
        trainer.model.eval()
        batch = make_batch(split.train, trainer.users[:64], 40, trainer.type_codes, trainer.event_buckets, with_targets=True)

        def loss_and_gradients(logit_rows):
            trainer.model.zero_grad()
            torch.manual_seed(5)  # the same sampled negatives in every pass
            loss = trainer.model(batch, catalogue, trainer.snapshots, negatives, 1, logit_rows)
            loss.backward()
            return loss.item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}

        whole_loss, whole_grads = loss_and_gradients(0)
        for logit_rows in (1, 7, 100):
            loss, grads = loss_and_gradients(logit_rows)
            assert loss == pytest.approx(whole_loss, rel=1e-5), (modalities, logit_rows)
            assert grads.keys() == whole_grads.keys()
            for name, grad in grads.items():
                assert torch.allclose(grad, whole_grads[name], atol=1e-5), (modalities, logit_rows, name)


def test_dropout_keeps_one_minus_p_and_rescales():
    from dynrec.models.dropout import Dropout

    torch.manual_seed(0)
    dropout, x = Dropout(0.2), torch.ones(200_000)
    out = dropout(x)
    assert ((out == 0).float().mean() - 0.2).abs() < 0.005
    assert torch.allclose(out[out != 0], torch.tensor(1.25))
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    assert torch.equal(dropout.eval()(x), x)


def test_the_model_catalogue_snapshots_and_every_batch_go_to_the_trainers_device(small, monkeypatch):
    """Run on the meta device (a second device on any CPU machine): any tensor the trainer keeps
    on the host, or any batch it forgets to move, shows up as a CPU tensor here."""
    split, catalogue, created_at = small
    cfg = config(epochs=1)
    cfg.model.modalities = ("id", "text", "image", "behaviour")
    trainer = SequenceTrainer(cfg, split, catalogue, created_at, device="meta")
    held = {f"param {name}": p for name, p in trainer.model.named_parameters()}
    held.update({f"catalogue {name}": t for name, t in vars(trainer.catalogue).items()})
    held["snapshots"] = trainer.snapshots
    assert {name: t.device.type for name, t in held.items() if t.device.type != "meta"} == {}
    assert trainer.scorer().device.type == "meta"

    stepped = []
    monkeypatch.setattr(trainer, "train_step", lambda batch: stepped.append(batch) or torch.zeros(()))
    trainer.train_epoch()
    assert len(stepped) == -(-len(trainer.users) // cfg.train.batch_size)
    devices = {f.name: getattr(batch, f.name).device.type for batch in stepped for f in dataclasses.fields(batch)}
    assert devices == dict.fromkeys(devices, "meta")


def test_mixed_precision_is_bf16_on_a_gpu_and_float32_on_cpu_unless_forced():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert autocast_dtype("auto", cuda) is torch.bfloat16
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("off", cuda) is None
    with pytest.raises(ValueError, match="mixed_precision"):
        DynrecConfig.from_dict({"train": {"mixed_precision": "fp8"}})


def test_an_epoch_without_a_user_to_learn_from_reports_no_loss_and_takes_no_step(small):
    """A store that has only first events (an empty start filling up) has no next item to predict."""
    split, catalogue, created_at = small
    trainer = SequenceTrainer(config(epochs=1), split, catalogue, created_at)
    trainer.users = trainer.users[:0]
    loss, samples, _ = trainer.train_epoch()
    assert np.isnan(loss) and samples == 0 and trainer.step == 0
