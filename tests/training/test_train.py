"""The Ray Train job on real local Ray: DDP workers, checkpoints, resume, and the served artefact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynrec.config import DynrecConfig
from dynrec.models.model import load_model
from dynrec.ranking.item_item import ITEM_ITEM_FILE, ItemItemWeights
from training.train import run_training


def tiny_config(home, epochs, workers=1, name="tiny"):
    config = DynrecConfig()
    config.home = home
    config.model.modalities = ("id", "behaviour")
    config.model.dim, config.model.max_length = 16, 30
    config.behaviour.time_buckets = 2
    config.source.dataset = "ml-100k"
    config.train.epochs, config.train.eval_every = epochs, 1
    config.train.num_workers, config.train.threads_per_worker = workers, 2 // workers
    config.train.run_name = name
    return config


def test_two_ddp_workers_train_and_write_the_served_model(ray_local, tmp_path):
    summary = run_training(tiny_config(tmp_path, epochs=2, workers=2, name="ddp"))
    assert summary["final"] and summary["epoch"] == 2
    assert 0.0 < summary["test_ndcg@10"] <= summary["test_hr@10"]
    model, item_ids, metrics = load_model(summary["model_path"])
    assert len(item_ids) == 1682 and metrics["best_ndcg@10"] == pytest.approx(summary["best_ndcg@10"])
    saved = json.loads((tmp_path / "artifacts" / "ddp" / "metrics.json").read_text())
    assert saved["test_hr@10"] == pytest.approx(summary["test_hr@10"])
    # the item-item term: its weight chosen on validation, saved beside the served model
    by_weight = {float(w): v for w, v in summary["item_item_valid_ndcg@10"].items()}
    assert summary["item_item_weight"] == max(by_weight, key=by_weight.get)
    weights = ItemItemWeights.load(tmp_path / "artifacts" / "ddp" / ITEM_ITEM_FILE)
    assert weights.weight == summary["item_item_weight"] and weights.item_ids == item_ids
    if weights.weight:
        assert summary["test_ndcg@10"] != summary["test_model_alone_ndcg@10"]
    # `dynrec eval --runs` prints the finished run's row
    shown = subprocess.run([str(Path(sys.executable).with_name("dynrec")), "eval", "--dataset", "ml-100k", "--models", "",
                            "--runs", "ddp"], capture_output=True, text=True, timeout=300, env={**os.environ, "DYNREC_HOME": str(tmp_path)})
    assert shown.returncode == 0, shown.stderr
    row = [line.split() for line in shown.stdout.splitlines() if line.startswith("ml-100k")]
    assert [r[1] for r in row] == ["ddp"] and float(row[0][3]) == pytest.approx(summary["test_ndcg@10"], abs=1e-4)
    assert float(row[0][6]) == summary["item_item_weight"]


def test_rerunning_a_run_resumes_from_its_checkpoint(ray_local, tmp_path):
    """The first run's last checkpoint is marked; the rerun must carry the mark into its own state
    (a fresh run that ignored the checkpoint would train epoch 1 again and lose it)."""
    def checkpoints():
        return sorted(p for p in (tmp_path / "runs" / "resume").glob("checkpoint_*") if p.is_dir())

    first = run_training(tiny_config(tmp_path, epochs=1, name="resume"))
    assert first["epoch"] == 1
    state = torch.load(checkpoints()[-1] / "trainer.pt", weights_only=False)
    state["history"][0]["mark"] = "trained by the first run"
    torch.save(state, checkpoints()[-1] / "trainer.pt")
    second = run_training(tiny_config(tmp_path, epochs=3, name="resume"))
    assert second["epoch"] == 3
    assert 1 <= len(checkpoints()) <= 2  # num_to_keep
    state = torch.load(checkpoints()[-1] / "trainer.pt", weights_only=False)
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert state["history"][0].get("mark") == "trained by the first run"
