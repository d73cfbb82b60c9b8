"""Training loop for DynrecModel, in plain torch so it runs the same under Ray Train or alone.

Ray Train (training/train.py) supplies the DDP wrap, the worker's rank and the report callback.
Each epoch's order comes from (seed, epoch), and dropout is reseeded per epoch, so a run
resumed from a checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from dynrec.config import DynrecConfig
from dynrec.data.interactions import Interactions
from dynrec.data.splits import LeaveOneOutSplit
from dynrec.encoders.behaviour import BehaviourFeatures, bucket_of, time_bucket_edges
from dynrec.eval.evaluate import evaluate
from dynrec.models.inputs import TrainingInputs
from dynrec.models.model import Catalogue, DynrecModel, SequenceBatch, event_type_codes, load_model, make_batch
from dynrec.models.text_tower import LowerTextStates, sampled_positions

# Early stopping waits for `train.patience` epochs AND `train.patience_steps` optimizer steps
# without a validation score `train.min_improvement` better than the last that counted. Epochs alone
# fail small data: with 610 users an epoch is 5 steps, so 10 epochs ended a run on its first plateau,
# before the model had moved off popularity (our SASRec baseline counts steps for the same reason).
# After half that wait the learning rate drops by `train.lr_decay`: at a fixed rate ML-1M kept
# creeping up until the time budget ended it.


def keep_large_allocations() -> None:
    """Keep freed blocks in the heap for the next step instead of handing them back to the OS: a
    step allocates and frees the same tensors every time, and mapping them afresh costs a page fault
    per 4 KiB. A thread's malloc arena (Ray Train runs the loop on one) grows to 64 MiB at most and
    maps anything bigger afresh whatever the thresholds: hence `train.logit_block_mb`."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 31)


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.mixed_precision` on `device`, None for float32. `auto` is bf16 on
    CUDA and float32 on CPU, where bf16 lost accuracy and no time (bench/results/train_precision.json)."""
    if mixed_precision == "bf16" or (mixed_precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def behaviour_for(histories: Interactions, created_at: np.ndarray, config: DynrecConfig) -> BehaviourFeatures:
    return BehaviourFeatures.from_events(
        histories.items, histories.timestamps, histories.values, histories.n_items, created_at, config.behaviour
    )


class SequenceScorer:
    """Scores all items for users' histories: the Recommender interface over a trained model.

    With `edges`, item behaviour features come from snapshots at those times (built from the
    histories' own events), as in training: each history item is embedded as of its event's
    snapshot, and each user is scored against the snapshot of their latest event. Without
    `edges`, one snapshot just after the latest event is used (the serving view of "now").
    """

    def __init__(
        self,
        model: DynrecModel,
        catalogue: Catalogue,
        created_at: np.ndarray,
        config: DynrecConfig,
        edges: np.ndarray | None = None,
        name: str = "dynrec",
    ):
        self.model, self.catalogue, self.created_at, self.config, self.name = model, catalogue, created_at, config, name
        self.edges = edges if edges is not None and model.uses_behaviour else None
        self._cached: tuple[int, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fit(self, train: Interactions) -> "SequenceScorer":
        return self

    @torch.no_grad()
    def item_table(self, histories: Interactions) -> torch.Tensor:
        """(S, N, dim): one table per snapshot time."""
        if self._cached is None or self._cached[0] != id(histories):
            self.model.eval()
            behaviour = behaviour_for(histories, self.created_at, self.config)
            times = self.edges if self.edges is not None else [int(histories.timestamps.max()) + 1]
            snapshots = torch.stack([torch.from_numpy(behaviour.snapshot(int(t))) for t in times]).to(self.device)
            self._cached = (id(histories), self.model.item_table(self.catalogue.to(self.device), snapshots))
        return self._cached[1]

    @torch.no_grad()
    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        table = self.item_table(histories)
        codes = event_type_codes(histories, self.config.model.event_types)
        buckets = bucket_of(histories.timestamps, self.edges) if self.edges is not None else None
        batch = make_batch(histories, users, self.config.model.max_length, codes, buckets).to(table.device)
        embeddings = self.model.user_embeddings(batch, table)
        users_at = torch.arange(len(users), device=table.device)
        now = batch.buckets[users_at, batch.lengths - 1] if table.shape[0] > 1 else torch.zeros_like(users_at)
        scores = torch.empty(len(users), table.shape[1], device=table.device)
        for bucket in torch.unique(now):
            rows = now == bucket
            scores[rows] = embeddings[rows] @ table[bucket].T
        return scores.cpu().numpy()


@dataclass
class EpochReport:
    epoch: int
    loss: float
    seconds: float
    samples_per_s: float
    valid: dict[str, float] | None
    best_ndcg: float
    stop: bool

    def metrics(self) -> dict[str, Any]:
        out = {"epoch": self.epoch, "loss": self.loss, "epoch_s": self.seconds, "samples_per_s": self.samples_per_s, "best_ndcg@10": self.best_ndcg}
        out.update({f"valid_{k}": v for k, v in (self.valid or {}).items()})
        return out


class SequenceTrainer:
    def __init__(
        self,
        config: DynrecConfig,
        split: LeaveOneOutSplit,
        catalogue: Catalogue,
        created_at: np.ndarray,
        rank: int = 0,
        world_size: int = 1,
        wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
        device: torch.device | str = "cpu",
        texts: list[str] | None = None,
    ):
        """`device` is where the model, the catalogue, the behaviour snapshots and every batch live:
        under Ray Train, `ray.train.torch.get_device()` (a GPU when the worker has one). `texts` (what
        the text encoder sees of each catalogue row, TrainingInputs.texts) is needed only to tune
        MiniLM's top layers (`model.text_layers`)."""
        self.device = torch.device(device)
        self.config, self.split, self.created_at = config, split, created_at
        self.catalogue = catalogue.to(self.device)
        self.rank, self.world_size = rank, world_size
        train = split.train
        keep_large_allocations()
        torch.use_deterministic_algorithms(config.train.deterministic)
        torch.manual_seed(config.train.seed)
        behaviour = behaviour_for(train, created_at, config)
        self.model = DynrecModel(
            config.model, train.n_items, catalogue.text.shape[1], catalogue.image.shape[1], behaviour.dim,
            config.encoders.text_model_path or None,
        )
        self.lower_text: LowerTextStates | None = None
        if self.model.text_tower is not None:
            if texts is None:
                raise ValueError("model.text_layers tunes MiniLM on the catalogue's texts: pass them (TrainingInputs.texts)")
            self.lower_text = LowerTextStates.compute(
                self.model.text_tower, texts, config.encoders.text_max_length, progress=rank == 0
            ).to(self.device)
        if config.train.item_init == "cooccurrence" and self.model.fusion.id_embedding is not None:
            from dynrec.models.item_init import cooccurrence_factors

            with torch.no_grad():
                self.model.fusion.id_embedding.weight.copy_(torch.from_numpy(cooccurrence_factors(train, config.model.dim)))
        self.model.to(self.device)
        self.autocast = autocast_dtype(config.train.mixed_precision, self.device)
        self.module = wrap_model(self.model) if wrap_model else self.model
        tower = self.model.text_tower
        tuned = {id(p) for p in tower.parameters()} if tower is not None else set()
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in tuned]}]
        if tower is not None:
            groups.append({"params": list(tower.parameters()), "lr": config.train.text_tune_lr})
        self.optimizer = torch.optim.Adam(groups, lr=config.train.learning_rate, weight_decay=config.train.weight_decay)
        self.edges = time_bucket_edges(train.timestamps, config.behaviour.time_buckets)
        self.snapshots = torch.stack([torch.from_numpy(behaviour.snapshot(int(edge))) for edge in self.edges]).to(self.device)
        self.event_buckets = bucket_of(train.timestamps, self.edges)
        self.type_codes = event_type_codes(train, config.model.event_types)
        block = int(config.train.logit_block_mb * 2**20)
        self.logit_rows = max(1, block // (4 * train.n_items)) if block else 0  # float32 logits
        self.users = np.flatnonzero(train.lengths >= 2)
        self.epoch = 0
        self.best_ndcg = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_since_best = 0
        self.step = 0  # optimizer steps so far
        self.best_step = 0
        self.elapsed_s, self.best_s = 0.0, 0.0  # seconds in fit (training and validation), and when the best came
        self.level = -1.0  # the last validation score that reset the patience
        self.improved_step = 0  # ...and the step it came at
        self.settled_epoch, self.settled_step = 0, 0  # that score or the last learning-rate drop, whichever is later
        self.stopped_by = ""  # early_stopping, budget or epochs, once fit has ended
        self.history: list[dict[str, Any]] = []

    def timing(self) -> dict[str, Any]:
        """Median seconds per epoch and training samples (target positions) per second so far, the
        optimizer steps taken (and where the best validation was), and what ended the run."""
        if not self.history:
            return {}
        return {
            "epoch_s_median": float(np.median([h["epoch_s"] for h in self.history])),
            "samples_per_s_median": float(np.median([h["samples_per_s"] for h in self.history])),
            "steps": self.step,
            "best_step": self.best_step,
            "training_s": self.elapsed_s,
            "best_s": self.best_s,
            "stopped_by": self.stopped_by,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_ndcg": self.best_ndcg,
            "best_state": self.best_state,
            "epochs_since_best": self.epochs_since_best,
            "step": self.step,
            "best_step": self.best_step,
            "level": (self.level, self.improved_step),
            "elapsed": (self.elapsed_s, self.best_s),
            "settled": (self.settled_epoch, self.settled_step),
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes a state saved on any device (a GPU run resumed on CPU, or the other way)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.best_ndcg = state["best_ndcg"]
        self.best_state = state["best_state"]
        self.epochs_since_best = state["epochs_since_best"]
        self.step = state.get("step", 0)
        self.best_step = state.get("best_step", 0)
        self.level, self.improved_step = state.get("level", (self.best_ndcg, self.best_step))
        self.elapsed_s, self.best_s = state.get("elapsed", (0.0, 0.0))
        self.settled_epoch, self.settled_step = state.get("settled", (0, 0))
        self.history = state["history"]
        self.refresh_text()

    def train_epoch(self) -> tuple[float, int, float]:
        """One pass over this worker's shard; every worker takes the same number of steps (DDP)."""
        cfg = self.config.train
        started = time.perf_counter()
        order = np.random.default_rng([cfg.seed, self.epoch]).permutation(self.users)
        per_worker = math.ceil(len(order) / self.world_size)
        shard = np.resize(order[self.rank :: self.world_size], per_worker)
        torch.manual_seed(cfg.seed * 100_003 + self.epoch * 101 + self.rank)
        self.module.train()
        losses, samples = [], 0
        for start in range(0, per_worker, cfg.batch_size):
            batch = make_batch(
                self.split.train, shard[start : start + cfg.batch_size], self.config.model.max_length,
                self.type_codes, self.event_buckets, with_targets=True,
            )
            samples += int((batch.targets >= 0).sum())  # counted on the host: no device sync per step
            losses.append(self.train_step(batch.to(self.device)))
        loss = torch.stack(losses).double().mean().item() if losses else float("nan")  # nan: no user has a next item yet
        return loss, samples, time.perf_counter() - started

    def train_step(self, batch: SequenceBatch) -> torch.Tensor:
        """One optimizer step on a batch already on `self.device`; the loss stays there (detached)."""
        cfg = self.config.train
        precision = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        tuned_text = None
        if self.lower_text is not None:
            rows, positions = sampled_positions(batch.targets, self.lower_text.position, cfg.text_tune_items)
            tuned_text = (rows, *self.lower_text.cut(positions))
        with precision:
            loss = self.module(batch, self.catalogue, self.snapshots, cfg.sampled_negatives, cfg.length_groups,
                               self.logit_rows, tuned_text)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.detach()

    def refresh_text(self) -> None:
        """The catalogue's text vectors through the tuned layers as they are now (a new tensor: the
        caller's catalogue keeps the frozen encoder's)."""
        if self.lower_text is None:
            return
        self.model.eval()
        text = self.catalogue.text.clone()
        rows = torch.nonzero(self.lower_text.position >= 0).squeeze(1)
        text[rows] = self.lower_text.vectors(self.model.text_tower)[self.lower_text.position[rows]]
        self.catalogue = dataclasses.replace(self.catalogue, text=text)

    def scorer(self) -> SequenceScorer:
        self.model.eval()
        return SequenceScorer(self.model, self.catalogue, self.created_at, self.config, self.edges)

    def validate(self) -> dict[str, float]:
        self.refresh_text()
        return evaluate(self.scorer(), self.split.train, self.split.valid_targets, k=self.config.eval.k)

    def fit(self, on_epoch: Callable[[EpochReport, "SequenceTrainer"], None] | None = None, progress: bool = True) -> float:
        """Train until `epochs`, the time budget, or early stopping (see `train.patience_steps`); leaves the
        best weights in the model and returns the best NDCG@k. `stopped_by` says which ended it."""
        cfg = self.config.train
        bar = tqdm(total=cfg.epochs, initial=self.epoch, desc="training", disable=not progress or self.rank != 0)
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
        started = time.monotonic() - self.elapsed_s
        while self.epoch < cfg.epochs:
            loss, samples, seconds = self.train_epoch()
            self.epoch += 1
            valid, stop, decay = None, False, False
            if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
                if self.rank == 0:
                    valid = self.validate()
                    score = valid[f"ndcg@{self.config.eval.k}"]
                    self.elapsed_s = time.monotonic() - started
                    if score > self.best_ndcg:
                        self.best_ndcg, self.best_step, self.best_s = score, self.step, self.elapsed_s
                        self.best_state = copy.deepcopy(self.model.state_dict())
                    if score > self.level * (1 + cfg.min_improvement):
                        self.level, self.improved_step = score, self.step
                        self.epochs_since_best = 0
                        self.settled_epoch, self.settled_step = self.epoch, self.step
                    else:
                        self.epochs_since_best += cfg.eval_every
                    if self.epochs_since_best >= cfg.patience and self.step - self.improved_step >= cfg.patience_steps:
                        self.stopped_by = "early_stopping"
                    elif time.monotonic() > deadline:
                        self.stopped_by = "budget"
                    stop = bool(self.stopped_by)
                    decay = (
                        cfg.lr_decay < 1.0
                        and self.epoch - self.settled_epoch >= cfg.patience / 2
                        and self.step - self.settled_step >= cfg.patience_steps / 2
                    )
                stop, decay = self._agree((stop, decay))
                if decay and not stop:
                    self.decay_learning_rate()
            self.elapsed_s = time.monotonic() - started
            report = EpochReport(self.epoch, loss, seconds, samples / seconds, valid, self.best_ndcg, stop)
            self.history.append(report.metrics())
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", best_ndcg=f"{self.best_ndcg:.4f}")
            if on_epoch:
                on_epoch(report, self)
            if stop:
                break
        bar.close()
        self.stopped_by = self.stopped_by or "epochs"
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.refresh_text()
        return self.best_ndcg

    def decay_learning_rate(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] *= self.config.train.lr_decay
        self.settled_epoch, self.settled_step = self.epoch, self.step

    def _agree(self, decision: tuple[bool, bool]) -> tuple[bool, bool]:
        """Rank 0 decides whether to stop and whether to lower the learning rate; under DDP every
        worker must do both at the same epoch."""
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            flag = [decision]
            dist.broadcast_object_list(flag, src=0)
            return tuple(flag[0])
        return decision


def restored_scorer(config: DynrecConfig, inputs: TrainingInputs, model_path) -> SequenceScorer:
    """The scorer of a saved model as its training run scored it (the same behaviour snapshots, the
    tuned text layers applied to the catalogue), on the inputs it was trained on."""
    trainer = SequenceTrainer(config, inputs.split, inputs.catalogue, inputs.created_at, texts=inputs.texts)
    trainer.model.load_state_dict(load_model(model_path)[0].state_dict())
    trainer.refresh_text()
    return trainer.scorer()
