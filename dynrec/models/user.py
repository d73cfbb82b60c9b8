"""UserEncoder: a causal Transformer over the user's recent items, event types and time gaps.

The output at the last position is the user embedding. `step` appends one event to a cached
state (keys and values per layer), so the serving path costs one position, not a recompute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dynrec.config import ModelConfig


def time_gap_bucket(gaps_seconds: torch.Tensor, buckets: int) -> torch.Tensor:
    """log2 buckets of the gap to the previous event: 0 s, ~1 s, 2-3 s, ... capped at buckets-1."""
    return torch.clamp(torch.floor(torch.log2(1.0 + gaps_seconds.clamp(min=0).float())), 0, buckets - 1).long()


class CausalBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: (B, T, dim) new positions. With a cache, they attend to the cached positions too."""
        q, k, v = (self._split(p) for p in self.qkv(self.norm_attn(x)).chunk(3, dim=-1))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        t_new, t_all = q.shape[2], k.shape[2]
        # position i of the new block may see every cached position and new positions up to i
        mask = torch.ones(t_new, t_all, dtype=torch.bool, device=x.device).tril(diagonal=t_all - t_new)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, t, hd = attended.shape
        x = x + self.dropout(self.attn_out(attended.transpose(1, 2).reshape(b, t, -1)))
        x = x + self.dropout(self.ffn(self.norm_ffn(x)))
        return x, (k, v)


@dataclass
class UserState:
    """What the serving path keeps per user to append one event cheaply."""

    cache: list[tuple[torch.Tensor, torch.Tensor]]
    length: int
    last_time: float
    embedding: torch.Tensor  # (dim,)


class UserEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.dim
        self.max_length = config.max_length
        self.time_gap_buckets = config.time_gap_buckets
        self.input_scale = math.sqrt(dim)
        self.position = nn.Embedding(config.max_length, dim)
        self.event_type = nn.Embedding(len(config.event_types) + 1, dim)  # last index: unknown type
        self.time_gap = nn.Embedding(config.time_gap_buckets, dim)
        self.value = nn.Linear(1, dim)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(CausalBlock(dim, config.user_heads, config.dropout) for _ in range(config.user_layers))
        self.norm = nn.LayerNorm(dim)
        self.value_center, self.value_scale = config.value_center, config.value_scale
        # small side embeddings, so the (scaled, unit-norm) item embedding dominates the input at start
        for table in (self.position, self.event_type, self.time_gap):
            nn.init.normal_(table.weight, std=0.02)
        nn.init.normal_(self.value.weight, std=0.02)
        nn.init.zeros_(self.value.bias)

    def _inputs(self, items, event_types, gaps, values, start: int) -> torch.Tensor:
        positions = torch.arange(start, start + items.shape[1], device=items.device)
        x = (
            items * self.input_scale
            + self.position(positions)
            + self.event_type(event_types)
            + self.time_gap(time_gap_bucket(gaps, self.time_gap_buckets))
            + self.value(((values - self.value_center) / self.value_scale).unsqueeze(-1))
        )
        return self.input_dropout(x)

    def forward(
        self, items: torch.Tensor, event_types: torch.Tensor, gaps: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """All positions' states, (B, T, dim), L2-normalised. Sequences are left-aligned (right padding):
        a causal model never lets a real position see the padding after it."""
        x = self._inputs(items, event_types, gaps, values, 0)
        for block in self.blocks:
            x, _ = block(x)
        return F.normalize(self.norm(x), dim=-1)

    @torch.no_grad()
    def start(self, items, event_types, gaps, values, last_time: float) -> UserState:
        """Encode one user's window (1, T, ...) and keep the per-layer cache for later steps."""
        x = self._inputs(items, event_types, gaps, values, 0)
        cache = []
        for block in self.blocks:
            x, kv = block(x)
            cache.append(kv)
        embedding = F.normalize(self.norm(x[0, -1]), dim=-1)
        return UserState(cache, items.shape[1], last_time, embedding)

    @torch.no_grad()
    def step(self, state: UserState, item: torch.Tensor, event_type: int, time: float, value: float) -> UserState | None:
        """Append one event (item: (dim,) embedding). Returns None when the window is full and
        the caller must re-encode the last `max_length` events with `start`."""
        if state.length >= self.max_length:
            return None
        gap = torch.tensor([[time - state.last_time]])
        x = self._inputs(
            item.view(1, 1, -1), torch.tensor([[event_type]]), gap, torch.tensor([[float(value)]]), state.length
        )
        cache = []
        for block, kv in zip(self.blocks, state.cache):
            x, kv = block(x, kv)
            cache.append(kv)
        embedding = F.normalize(self.norm(x[0, -1]), dim=-1)
        return UserState(cache, state.length + 1, time, embedding)
