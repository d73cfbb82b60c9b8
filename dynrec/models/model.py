"""DynrecModel: item fusion + user encoder, trained by next-item prediction over all items."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dynrec.config import ModelConfig
from dynrec.data.interactions import Interactions
from dynrec.models.fusion import ItemFusion
from dynrec.models.user import UserEncoder


@dataclass
class Catalogue:
    """The catalogue's frozen content features as tensors (computed once, never per step)."""

    index: torch.Tensor  # (N,) item index, n_items or above for items without an ID embedding
    text: torch.Tensor
    text_mask: torch.Tensor
    image: torch.Tensor
    image_mask: torch.Tensor

    @classmethod
    def from_arrays(cls, text, text_mask, image, image_mask, index=None) -> "Catalogue":
        n = len(text)
        return cls(
            torch.as_tensor(np.arange(n) if index is None else index, dtype=torch.long),
            torch.as_tensor(text, dtype=torch.float32),
            torch.as_tensor(text_mask, dtype=torch.bool),
            torch.as_tensor(image, dtype=torch.float32),
            torch.as_tensor(image_mask, dtype=torch.bool),
        )

    def to(self, device: torch.device) -> "Catalogue":
        return Catalogue(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


@dataclass
class SequenceBatch:
    """Left-aligned windows of users' events; `targets` are the next items (-1 where none)."""

    items: torch.Tensor  # (B, T) long
    event_types: torch.Tensor
    gaps: torch.Tensor  # seconds since the previous event
    values: torch.Tensor
    buckets: torch.Tensor  # behaviour snapshot of each input event
    lengths: torch.Tensor  # (B,)
    targets: torch.Tensor | None = None
    target_buckets: torch.Tensor | None = None

    def take(self, rows: torch.Tensor) -> "SequenceBatch":
        """The sequences at `rows`, cut to the longest of them."""
        width = int(self.lengths[rows].max())
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return SequenceBatch(**{
            name: None if value is None else value[rows] if value.dim() == 1 else value[rows, :width]
            for name, value in fields.items()
        })

    def to(self, device: torch.device) -> "SequenceBatch":
        """The batch on `device` (the training worker's: `ray.train.torch.get_device()`)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return SequenceBatch(**{name: None if value is None else value.to(device) for name, value in fields.items()})


def event_type_codes(interactions: Interactions, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Map the data's event-type codes onto the model's vocabulary (unknown -> len(vocabulary))."""
    lookup = np.array([vocabulary.index(n) if n in vocabulary else len(vocabulary) for n in interactions.event_type_names])
    return lookup[interactions.event_types]


def make_batch(
    interactions: Interactions,
    users: np.ndarray,
    max_length: int,
    type_codes: np.ndarray,
    event_buckets: np.ndarray | None = None,
    with_targets: bool = False,
) -> SequenceBatch:
    """The last `max_length` events of each user (plus one more, shifted, as targets when training)."""
    span = max_length + 1 if with_targets else max_length
    ends = interactions.indptr[users + 1]
    starts = np.maximum(interactions.indptr[users], ends - span)
    lengths = ends - starts
    width = max(int(lengths.max()) if len(users) else 1, 1 + with_targets)
    offsets = np.arange(width)
    positions = starts[:, None] + offsets[None, :]
    valid = offsets[None, :] < lengths[:, None]
    positions = np.where(valid, positions, 0)
    times = interactions.timestamps[positions]
    gaps = np.diff(times, axis=1, prepend=times[:, :1])
    buckets = event_buckets[positions] if event_buckets is not None else np.zeros_like(positions)
    fields = dict(
        items=np.where(valid, interactions.items[positions], 0).astype(np.int64),
        event_types=np.where(valid, type_codes[positions], 0).astype(np.int64),
        gaps=np.where(valid, gaps, 0),
        values=np.where(valid, interactions.values[positions], 0.0),
        buckets=np.where(valid, buckets, 0),
    )
    if with_targets:
        target_valid = valid[:, 1:]
        batch = SequenceBatch(
            **{k: torch.as_tensor(v[:, :-1]) for k, v in fields.items()},
            lengths=torch.as_tensor(lengths - 1),
            targets=torch.as_tensor(np.where(target_valid, fields["items"][:, 1:], -1)),
            target_buckets=torch.as_tensor(fields["buckets"][:, 1:]),
        )
    else:
        batch = SequenceBatch(**{k: torch.as_tensor(v) for k, v in fields.items()}, lengths=torch.as_tensor(lengths))
    batch.values = batch.values.float()
    batch.gaps = batch.gaps.float()
    return batch


class DynrecModel(nn.Module):
    def __init__(self, config: ModelConfig, n_items: int, text_dim: int, image_dim: int, behaviour_dim: int,
                 text_model_path: str | None = None):
        """`text_model_path`: the text model whose top layers `config.text_layers` tunes (default: the
        packaged MiniLM)."""
        super().__init__()
        self.config = config
        self.fusion = ItemFusion(n_items, text_dim, image_dim, behaviour_dim, config)
        self.user = UserEncoder(config)
        self.text_tower = None
        if config.text_layers and "text" in config.modalities:
            from dynrec.encoders.text import packaged_text_model_path
            from dynrec.models.text_tower import TextTower

            self.text_tower = TextTower(config.text_layers, text_model_path or packaged_text_model_path())
        # logits are cosine similarities times a learned scale that starts at 1 / temperature:
        # how sharp the softmax over the catalogue should be depends on its size and the data,
        # which no one fixed value fits. Training only: it does not change any user's ranking.
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)))

    @property
    def uses_behaviour(self) -> bool:
        return "behaviour" in self.fusion.modalities

    def item_table(self, catalogue: Catalogue, behaviour: torch.Tensor | None) -> torch.Tensor:
        """(S, N, dim) item embeddings at S behaviour snapshots (S = 1 without behaviour)."""
        table = self.fusion(
            catalogue.index, catalogue.text, catalogue.text_mask, catalogue.image, catalogue.image_mask,
            behaviour if self.uses_behaviour else None,
        )
        return table if table.dim() == 3 else table.unsqueeze(0)

    def user_states(self, batch: SequenceBatch, table: torch.Tensor) -> torch.Tensor:
        buckets = batch.buckets if table.shape[0] > 1 else torch.zeros_like(batch.buckets)
        inputs = table[buckets, batch.items]
        return self.user(inputs, batch.event_types, batch.gaps, batch.values)

    def user_embeddings(self, batch: SequenceBatch, table: torch.Tensor) -> torch.Tensor:
        states = self.user_states(batch, table)
        return states[torch.arange(len(states), device=states.device), batch.lengths - 1]

    def forward(
        self, batch: SequenceBatch, catalogue: Catalogue, behaviour: torch.Tensor | None, negatives: int = 0,
        length_groups: int = 1, logit_rows: int = 0, tuned_text: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """Mean next-item cross-entropy over every real position (full softmax, or sampled). The
        user encoder takes the batch in `length_groups` groups of similar length (see
        `TrainConfig.length_groups`); sequences never interact, so the loss is the same. The
        logits are taken `logit_rows` positions at a time (0: all at once), see `TrainConfig.logit_block_mb`.
        `tuned_text` (catalogue rows, their lower-layer token states and masks) replaces those rows'
        text vectors with the text tower's, so the tower learns through them (dynrec.models.text_tower)."""
        if tuned_text is not None:
            rows, states, mask = tuned_text
            catalogue = dataclasses.replace(catalogue, text=catalogue.text.index_copy(0, rows, self.text_tower(states, mask)))
        table = self.item_table(catalogue, behaviour)
        by_length = torch.argsort(batch.lengths, descending=True)
        states, targets, buckets = [], [], []
        for rows in by_length.tensor_split(min(length_groups, len(by_length))):
            group = batch.take(rows)
            real = group.targets >= 0
            states.append(self.user_states(group, table)[real])
            targets.append(group.targets[real])
            buckets.append(group.target_buckets[real])
        # scaling the (P, dim) states is far cheaper than dividing the (P, N) logits
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        hidden, targets = torch.cat(states) * scale, torch.cat(targets)
        buckets = torch.cat(buckets) if table.shape[0] > 1 else torch.zeros_like(targets)
        total = hidden.new_zeros(())
        for bucket in torch.unique(buckets):
            positions = torch.nonzero(buckets == bucket).squeeze(1)
            items = table[bucket]
            sampled = torch.randint(0, items.shape[0], (negatives,), device=items.device) if negatives else None
            for rows in positions.split(logit_rows or len(positions)):
                if sampled is not None:
                    positive = (hidden[rows] * items[targets[rows]]).sum(-1, keepdim=True)
                    logits = torch.cat([positive, hidden[rows] @ items[sampled].T], dim=1)
                    labels = torch.zeros(len(rows), dtype=torch.long, device=items.device)
                else:
                    logits = hidden[rows] @ items.T
                    labels = targets[rows]
                total = total + F.cross_entropy(logits, labels, reduction="sum")
        return total / max(len(targets), 1)


def save_model(path, model: DynrecModel, item_ids, metrics: dict | None = None) -> None:
    """One file with everything serving needs to rebuild the model: config, sizes, weights, ids."""
    from dynrec.encoders.text import packaged_text_model_path

    fusion = model.fusion
    tower = model.text_tower
    text_base = "" if tower is None or Path(tower.base_path).resolve() == packaged_text_model_path() else tower.base_path
    torch.save(
        {
            "model_config": dataclasses.asdict(model.config),
            "n_items": fusion.n_items,
            "dims": {m: p[0].in_features for m, p in fusion.projections.items()},
            "state_dict": model.state_dict(),
            "item_ids": list(item_ids),
            "metrics": metrics or {},
            "text_base": text_base,  # the text model a tuned tower's layers came from ("": the packaged one)
        },
        path,
    )


def load_model(path) -> tuple[DynrecModel, list[str], dict]:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    config = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["model_config"].items()})
    dims = saved["dims"]
    model = DynrecModel(config, saved["n_items"], dims.get("text", 1), dims.get("image", 1), dims.get("behaviour", 1),
                        saved.get("text_base") or None)
    state = dict(saved["state_dict"])
    state.setdefault("log_scale", model.log_scale.detach().clone())  # saved before the scale was learned
    model.load_state_dict(state)
    model.eval()
    return model, saved["item_ids"], saved["metrics"]
