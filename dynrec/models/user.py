"""UserEncoder: a causal Transformer over the user's recent items, event types and time gaps.

The output at the last position is the user embedding. `extend` appends events to a sequence whose
earlier positions are given only by their keys and values (a key/value cache), so serving pays for
the new events, not the whole window, and gets the same states as `forward` over the whole window
(dynrec.users.incremental keeps the caches; dynrec.onnx.export.UserStepGraph exports the step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dynrec.config import ModelConfig
from dynrec.models.dropout import Dropout


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
        self.dropout = Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, dim); position i attends to positions up to i."""
        q, k, v = (self._split(p) for p in self.qkv(self.norm_attn(x)).chunk(3, dim=-1))
        t = x.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, t, hd = attended.shape
        x = x + self.dropout(self.attn_out(attended.transpose(1, 2).reshape(b, t, -1)))
        return x + self.dropout(self.ffn(self.norm_ffn(x)))

    def at(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """`forward`'s output at one position of each sequence, `last` (B,), from x (B, T, dim):
        every position's keys and values, but the query, the attention's output and the feed-forward
        only there. A final block needs no more, and skips most of its work."""
        dim = self.attn_out.in_features
        qkv = self.qkv(self.norm_attn(x))
        q = qkv.gather(1, last.view(-1, 1, 1).expand(-1, 1, dim))
        k, v = qkv[..., dim : 2 * dim], qkv[..., 2 * dim :]
        visible = (torch.arange(x.shape[1], device=x.device)[None, :] <= last[:, None])[:, None, None, :]
        attended = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v), attn_mask=visible)
        x = x.gather(1, last.view(-1, 1, 1).expand(-1, 1, dim)) + self.attn_out(attended.transpose(1, 2).reshape(x.shape[0], 1, dim))
        return (x + self.ffn(self.norm_ffn(x))).squeeze(1)

    def extend(
        self, x: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sequence's new positions x (T, dim) after P earlier ones, given by this block's keys
        and values of them (P, dim each): new position i attends to every earlier one and to new
        ones up to i (`positions`, (T,)), as in `forward` over the whole sequence. Returns the new
        positions' outputs (T, dim), keys (T, dim) and values (T, dim)."""
        dim = self.attn_out.in_features  # a number, not a traced shape: fewer nodes in the exported graph
        qkv = self.qkv(self.norm_attn(x))
        q, k, v = qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
        t, p, width = x.shape[0], past_keys.shape[0], dim // self.heads
        future = positions[None, :] > positions[:, None]  # among the new ones; every earlier one is before

        def heads(y: torch.Tensor) -> torch.Tensor:  # (n, dim) -> (heads, n, dim / heads)
            return y if self.heads == 1 else y.reshape(y.shape[0], self.heads, width).transpose(0, 1)

        # attention written out rather than F.scaled_dot_product_attention (the same sums), with the
        # earlier and the new positions' scores apart, so the cached keys and values are read where
        # they lie and never copied: what a one-event step costs on ONNX Runtime hardly grows with P
        q = heads(q) * (1.0 / math.sqrt(width))
        earlier = q @ heads(past_keys).transpose(-1, -2)
        new = (q @ heads(k).transpose(-1, -2)).masked_fill(future, float("-inf"))
        weights = torch.cat([earlier, new], dim=-1).softmax(dim=-1)
        attended = weights[..., :p] @ heads(past_values) + weights[..., p:] @ heads(v)
        if self.heads > 1:
            attended = attended.transpose(0, 1).reshape(t, -1)
        x = x + self.attn_out(attended)
        return x + self.ffn(self.norm_ffn(x)), k, v


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
        self.input_dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(CausalBlock(dim, config.user_heads, config.dropout) for _ in range(config.user_layers))
        self.norm = nn.LayerNorm(dim)
        self.value_center, self.value_scale = config.value_center, config.value_scale
        # small side embeddings, so the (scaled, unit-norm) item embedding dominates the input at start
        for table in (self.position, self.event_type, self.time_gap):
            nn.init.normal_(table.weight, std=0.02)
        nn.init.normal_(self.value.weight, std=0.02)
        nn.init.zeros_(self.value.bias)

    def _inputs(self, items, event_types, gaps, values, positions=None) -> torch.Tensor:
        """Input vectors (..., T, dim) of the events at `positions` (default: 0 .. T - 1)."""
        if positions is None:
            positions = torch.arange(items.shape[-2], device=items.device)
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
        x = self._inputs(items, event_types, gaps, values)
        for block in self.blocks:
            x = block(x)
        return F.normalize(self.norm(x), dim=-1)

    def embed(
        self, items: torch.Tensor, event_types: torch.Tensor, gaps: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Each sequence's state at its last real event (`lengths`; right padding), (B, dim): equal to
        `forward`'s there, with the final block run at that position alone (CausalBlock.at)."""
        x = self._inputs(items, event_types, gaps, values)
        for block in self.blocks[:-1]:
            x = block(x)
        x = self.blocks[-1].at(x, (lengths - 1).clamp(min=0))
        return F.normalize(self.norm(x), dim=-1)

    def extend(
        self, items: torch.Tensor, event_types: torch.Tensor, gaps: torch.Tensor, values: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One user's next T events (items (T, dim), the rest (T,)) after P events given by each
        layer's (keys, values) of them, (P, dim) each (P may be 0): the embedding at the last new
        event (dim,), equal to `forward`'s there over all P + T events, and the new events' keys and
        values, (T, layers * 2 * dim): each event's layer 0 keys, layer 0 values, layer 1 keys, ...
        Inference only (no dropout); P + T must not exceed max_length."""
        positions = torch.arange(items.shape[0], device=items.device) + past[0][0].shape[0]
        x = self._inputs(items, event_types, gaps, values, positions)
        present = []
        for block, (keys, values_) in zip(self.blocks, past):
            x, k, v = block.extend(x, keys, values_, positions)
            present += [k, v]
        return F.normalize(self.norm(x[-1]), dim=-1), torch.cat(present, dim=1)
