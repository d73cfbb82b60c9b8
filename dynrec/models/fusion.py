"""ItemFusion: one L2-normalised item embedding from ID, text, image and behaviour tokens.

Each modality is projected to `dim` and tagged with a modality-type embedding. A learned item
token attends over the modality tokens (missing ones masked out), followed by a feed-forward
block. The item token's output is the embedding. Only the item token is read out, so only its
query is computed; that is exact for this single layer and keeps the per-step cost of embedding
the whole catalogue at every behaviour snapshot small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynrec.config import ModelConfig

MODALITIES = ("id", "text", "image", "behaviour")


class ItemFusion(nn.Module):
    def __init__(self, n_items: int, text_dim: int, image_dim: int, behaviour_dim: int, config: ModelConfig):
        super().__init__()
        unknown = set(config.modalities) - set(MODALITIES)
        if unknown or not config.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {config.modalities}")
        self.modalities = tuple(m for m in MODALITIES if m in config.modalities)
        self.n_items = n_items
        self.id_dropout = config.id_dropout if len(self.modalities) > 1 else 0.0
        dim = config.dim
        self.heads = config.fusion_heads
        in_dims = {"text": text_dim, "image": image_dim, "behaviour": behaviour_dim}
        self.id_embedding = nn.Embedding(n_items, dim) if "id" in self.modalities else None
        self.projections = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(in_dims[m], dim), nn.LayerNorm(dim)) for m in self.modalities if m != "id"}
        )
        self.modality_type = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.item_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.norm_tokens = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(dim, dim)

    def forward(
        self,
        item_index: torch.Tensor,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        behaviour: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embed N items. `behaviour` may carry leading snapshot dims, (..., N, F); so does the output.

        `item_index` >= n_items (or < 0) marks an item without a trained ID embedding (a new item).
        """
        n = item_index.shape[0]
        lead = behaviour.shape[:-2] if (behaviour is not None and "behaviour" in self.modalities) else ()
        tokens, masks = [], []
        for position, modality in enumerate(self.modalities):
            if modality == "id":
                known = (item_index >= 0) & (item_index < self.n_items)
                token = self.id_embedding(torch.where(known, item_index, torch.zeros_like(item_index)))
                mask = known
                if self.training and self.id_dropout > 0:
                    mask = mask & (torch.rand(n, device=item_index.device) >= self.id_dropout)
            elif modality == "behaviour":
                token = self.projections[modality](behaviour)
                mask = torch.ones(n, dtype=torch.bool, device=item_index.device)
            else:
                features = text if modality == "text" else image
                token = self.projections[modality](features)
                mask = text_mask if modality == "text" else image_mask
            tokens.append((token + self.modality_type[position]).expand(*lead, n, -1))
            masks.append(mask.expand(*lead, n))
        item = self.item_token.expand(*lead, n, 1, -1)
        tokens = torch.cat([item, torch.stack(tokens, dim=-2)], dim=-2)  # (..., N, 1 + M, dim)
        masks = torch.cat([torch.ones(*lead, n, 1, dtype=torch.bool, device=item_index.device), torch.stack(masks, -1)], -1)
        return self._read_out(tokens, masks)

    def _read_out(self, tokens: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        *lead, t, dim = tokens.shape
        head_dim = dim // self.heads
        normed = self.norm_tokens(tokens)
        query = self.query(normed[..., :1, :]).reshape(*lead, 1, self.heads, head_dim).transpose(-2, -3)
        key, value = self.key_value(normed).chunk(2, dim=-1)
        key = key.reshape(*lead, t, self.heads, head_dim).transpose(-2, -3)
        value = value.reshape(*lead, t, self.heads, head_dim).transpose(-2, -3)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=masks[..., None, None, :])
        attended = attended.transpose(-2, -3).reshape(*lead, dim)
        hidden = tokens[..., 0, :] + self.dropout(self.attn_out(attended))
        hidden = hidden + self.dropout(self.ffn(self.norm_ffn(hidden)))
        return F.normalize(self.output(hidden), dim=-1)
