"""ItemFusion: one L2-normalised item embedding from ID, text, image and behaviour tokens.

Each modality is projected to `dim` and tagged with a modality-type embedding. A learned item
token attends over itself and the modality tokens (missing ones masked out), followed by a
feed-forward block; the item token's output is the embedding. Only the item token is read out,
so only its query is computed: exact for this single layer, and it keeps the per-step cost of
embedding the whole catalogue at every behaviour snapshot small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynrec.config import ModelConfig
from dynrec.models.dropout import Dropout

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
        self.dropout = Dropout(config.dropout)
        self.output = nn.Linear(dim, dim)
        # The ID token also joins the output directly (see forward). Its rows start small, like a
        # SASRec item table's (std dim^-1/2), so Adam's first steps move them by a useful fraction;
        # at N(0, 1) they crawl and the ID-only model sat near ln(N) loss for its first epochs.
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=dim**-0.5)
        # no shared offset at the start: biases shared by every item made all items point one way
        # (mean cosine 0.67 between random items at init), so the first logits were near uniform
        nn.init.zeros_(self.output.bias)
        # and the fused path starts small beside the ID vector (mean cosine 0.07 at init); it is
        # normalised at the end, so content-only items keep the same direction at any scale
        nn.init.normal_(self.output.weight, std=0.02)

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
        static, masks = [self.item_token.expand(n, -1)], [torch.ones(n, dtype=torch.bool, device=item_index.device)]
        dynamic, direct = None, None
        for position, modality in enumerate(self.modalities):
            if modality == "behaviour":
                dynamic = self.projections[modality](behaviour) + self.modality_type[position]
                continue
            if modality == "id":
                known = (item_index >= 0) & (item_index < self.n_items)
                token = self.id_embedding(torch.where(known, item_index, torch.zeros_like(item_index)))
                mask = known
                if self.training and self.id_dropout > 0:
                    mask = mask & (torch.rand(n, device=item_index.device) >= self.id_dropout)
                direct = token * mask[:, None].to(token.dtype)
            else:
                token = self.projections[modality](text if modality == "text" else image)
                mask = text_mask if modality == "text" else image_mask
            static.append(token + self.modality_type[position])
            masks.append(mask)
        fused = self._read_out(torch.stack(static, dim=1), torch.stack(masks, dim=1), dynamic)
        # a known item's ID vector is added after the fusion: a free per-item direction, as in an
        # ID-only sequential model's table, with the content path learning what IDs do not carry
        # (and all there is for new items, whose ID token is masked, as ID dropout rehearses)
        return F.normalize(fused + direct if direct is not None else fused, dim=-1)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], self.heads, x.shape[-1] // self.heads)

    def _read_out(self, static: torch.Tensor, masks: torch.Tensor, dynamic: torch.Tensor | None) -> torch.Tensor:
        """Attention from the item token over the tokens, then the feed-forward block (not yet normalised).

        The item token's query is the same for every item, and the static tokens (item, ID, text,
        image) do not change between behaviour snapshots, so their keys and values are computed
        once; only the behaviour token is projected per snapshot.
        """
        head_dim = static.shape[-1] // self.heads
        query = self._heads(self.query(self.norm_tokens(self.item_token))) / head_dim**0.5  # (H, hd)
        key, value = (self._heads(t) for t in self.key_value(self.norm_tokens(static)).chunk(2, dim=-1))
        scores = (key * query).sum(-1).masked_fill(~masks[..., None], float("-inf"))  # (N, T, H)
        if dynamic is None:
            weights = scores.softmax(dim=-2)
            attended = torch.einsum("nth,nthd->nhd", weights, value)
        else:
            key_b, value_b = (self._heads(t) for t in self.key_value(self.norm_tokens(dynamic)).chunk(2, dim=-1))
            score_b = (key_b * query).sum(-1)  # (..., N, H)
            weights = torch.cat([scores.expand(*score_b.shape[:-2], *scores.shape), score_b.unsqueeze(-2)], dim=-2)
            weights = weights.softmax(dim=-2)
            attended = torch.einsum("...nth,nthd->...nhd", weights[..., :-1, :], value) + weights[..., -1, :, None] * value_b
        item = self.item_token
        hidden = item + self.dropout(self.attn_out(attended.flatten(-2)))
        hidden = hidden + self.dropout(self.ffn(self.norm_ffn(hidden)))
        return self.output(hidden)
