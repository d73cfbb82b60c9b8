"""Our SASRec baseline: a causal Transformer over item ids, trained with full-softmax cross-entropy.

The strongest standard sequential baseline (DESIGN.md, evaluation). `fit` holds out each user's
last event of what it is given and early-stops on that event's NDCG@10: handed the protocol's
`test_input` (train plus validation), this is exactly training on `train` and stopping on the
validation items, and `score` then reads the whole history, validation item included.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dynrec.config import SASRecConfig
from dynrec.data.interactions import Interactions
from dynrec.eval.evaluate import evaluate

logger = logging.getLogger(__name__)


def last_items(interactions: Interactions, users: np.ndarray, length: int, pad: int) -> np.ndarray:
    """(len(users), length) int64: each user's newest `length` items, right-aligned, left-padded with `pad`."""
    ends = interactions.indptr[users + 1]
    starts = interactions.indptr[users]
    index = ends[:, None] - length + np.arange(length)[None, :]
    inside = index >= starts[:, None]
    return np.where(inside, interactions.items[np.where(inside, index, 0)], pad).astype(np.int64)


class _Block(nn.Module):
    """Pre-LN Transformer block: causal self-attention, then a position-wise feed-forward layer."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        # no dropout on the attention weights: about 15% of a step on CPU, for the least-used dropout
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class SASRecNetwork(nn.Module):
    """Item + position embeddings, causal blocks, a final norm; outputs score against the input table."""

    def __init__(self, n_items: int, config: SASRecConfig):
        super().__init__()
        self.pad = n_items
        self.items = nn.Embedding(n_items + 1, config.dim, padding_idx=n_items)
        self.positions = nn.Embedding(config.max_length, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config.dim, config.heads, config.dropout) for _ in range(config.blocks))
        self.norm = nn.LayerNorm(config.dim)
        # small tables: the first logits are near uniform and no position dominates the item
        nn.init.normal_(self.items.weight, std=config.dim**-0.5)
        nn.init.normal_(self.positions.weight, std=config.dim**-0.5)
        with torch.no_grad():
            self.items.weight[n_items].zero_()

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """(batch, length) right-aligned item indices -> (batch, length, dim) states; position t sees 0..t."""
        length = sequences.shape[1]
        padding = sequences == self.pad
        x = self.items(sequences) + self.positions.weight[-length:]
        x = self.drop(x).masked_fill(padding[..., None], 0.0)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        # padding is never attended to, except by itself (so no row is empty)
        allowed = (causal & ~padding[:, None, :]) | torch.eye(length, dtype=torch.bool)
        allowed = allowed[:, None]
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.items.weight[: self.pad].T


class SASRec:
    """`Recommender`: fit trains with early stopping on each user's held-out last event."""

    name = "sasrec"

    def __init__(self, config: SASRecConfig):
        self.config = config
        self.network: SASRecNetwork | None = None
        self.training_: dict = {}
        self.epoch_losses_: list[float] = []  # mean training loss of each epoch

    def _trimmed(self, interactions: Interactions, users: np.ndarray, length: int) -> torch.Tensor:
        """Users' newest items, cut to the widest real sequence among them (padding-only columns dropped)."""
        sequences = last_items(interactions, users, length, interactions.n_items)
        real = (sequences != interactions.n_items).any(axis=0)
        first = int(np.argmax(real)) if real.any() else length - 1
        return torch.from_numpy(sequences[:, first:])

    def fit(self, train: Interactions) -> "SASRec":
        config = self.config
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        history = train.truncate(np.maximum(train.lengths - 1, 0))
        targets = np.where(train.lengths >= 2, train.items[np.maximum(train.indptr[1:] - 1, 0)], -1).astype(np.int64)
        rows = np.flatnonzero(history.lengths >= 2)  # users with at least one (input, next item) pair
        windows = last_items(history, rows, config.max_length + 1, train.n_items)
        self.network = SASRecNetwork(train.n_items, config)
        optimizer = torch.optim.Adam(self.network.parameters(), lr=config.learning_rate)

        started = time.perf_counter()
        best_ndcg, best_step, best_state = -1.0, 0, None
        step, positions, epoch_seconds, stopped_by = 0, 0, [], "epochs"

        def validate() -> bool:
            """Validation NDCG@10 now; keeps the best weights. True when patience has run out."""
            nonlocal best_ndcg, best_step, best_state
            ndcg = evaluate(self, history, targets, k=10)["ndcg@10"]
            self.network.train()
            if ndcg > best_ndcg:
                best_ndcg, best_step, best_state = ndcg, step, copy.deepcopy(self.network.state_dict())
            logger.info("sasrec step %d: validation NDCG@10 %.4f (best %.4f at step %d)", step, ndcg, best_ndcg, best_step)
            return step - best_step >= config.patience_steps

        self.network.train()
        for _ in range(config.max_epochs):
            epoch_started, evaluating, losses = time.perf_counter(), 0.0, []
            order = rng.permutation(len(rows))
            for start in range(0, len(order), config.batch_size):
                batch = windows[order[start : start + config.batch_size]]
                first = int(np.argmax((batch != train.n_items).any(axis=0)))
                inputs = torch.from_numpy(batch[:, first:-1])
                labels = torch.from_numpy(batch[:, first + 1 :])
                real = inputs != train.n_items
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                    logits = self.network.logits(self.network(inputs)[real])
                loss = F.cross_entropy(logits.float(), labels[real])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step, positions = step + 1, positions + int(real.sum())
                losses.append(loss.item())
                if step % config.eval_every_steps == 0:
                    evaluation_started = time.perf_counter()
                    if validate():
                        stopped_by = "early_stopping"
                    evaluating += time.perf_counter() - evaluation_started
                if stopped_by == "epochs" and config.max_minutes and time.perf_counter() - started > 60 * config.max_minutes:
                    stopped_by = "budget"
                if stopped_by != "epochs":
                    break
            epoch_seconds.append(time.perf_counter() - epoch_started - evaluating)
            self.epoch_losses_.append(float(np.mean(losses)))
            if stopped_by != "epochs":
                break
        if step % config.eval_every_steps:
            validate()
        self.network.load_state_dict(best_state)
        self.network.eval()
        wall = time.perf_counter() - started
        self.training_ = {
            "wall_s": round(wall, 1),
            "epochs": len(epoch_seconds),
            "epoch_s_median": round(float(np.median(epoch_seconds)), 3),
            "positions_per_s": round(positions / sum(epoch_seconds), 1),
            "steps": step,
            "best_step": best_step,
            "best_valid_ndcg@10": round(best_ndcg, 6),
            "stopped_by": stopped_by,
        }
        logger.info("sasrec trained: %s", self.training_)
        return self

    @torch.no_grad()
    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        self.network.eval()
        states = self.network(self._trimmed(histories, np.asarray(users), self.config.max_length))[:, -1]
        return self.network.logits(states).numpy().astype(np.float32, copy=False)
