"""MiniLM's top layers, trained with the recommender (`model.text_layers`; 0 keeps MiniLM frozen).

The frozen lower layers run once per catalogue text before training (`LowerTextStates`), and their
token states are kept in float16, so a step runs only the top layers, and only for the texts of a
few of its target items (`train.text_tune_items`); the rest of the catalogue's text table is
refreshed without gradients before each validation. A trained tower is served as a whole MiniLM
folder (`save_tuned_encoder`), which the text encoder, its ONNX export and the catalogue's
embedding read like any other model folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _base_model(path: str | Path):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path), local_files_only=True).eval()


def _run_layers(layers, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BERT layers over (B, T, d) token states; `mask` (B, T) is True on real tokens."""
    blocked = torch.zeros(mask.shape, dtype=states.dtype, device=states.device)
    blocked = blocked.masked_fill(~mask, torch.finfo(states.dtype).min)[:, None, None, :]
    for layer in layers:
        out = layer(states, attention_mask=blocked)
        states = out[0] if isinstance(out, tuple) else out
    return states


def mean_pooled(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit sentence vectors: the mean of the real tokens' states, as the text encoder pools."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, p=2.0, dim=1)


class TextTower(nn.Module):
    """The top `layers` transformer layers of the text model at `base_path`, trainable."""

    def __init__(self, layers: int, base_path: str | Path):
        super().__init__()
        base = _base_model(base_path)
        blocks = base.encoder.layer
        if not 0 < layers <= len(blocks):
            raise ValueError(f"model.text_layers must be between 1 and {len(blocks)}, got {layers}")
        self.first = len(blocks) - layers
        self.layers = nn.ModuleList(blocks[self.first:])
        self.base_path = str(base_path)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, d) lower-layer states (any float dtype) -> (B, d) unit text vectors."""
        return mean_pooled(_run_layers(self.layers, states.float(), mask), mask)


@dataclass
class LowerTextStates:
    """The frozen lower layers' token states of the catalogue's texts, and which rows they are."""

    states: torch.Tensor  # (n, T, d) float16
    mask: torch.Tensor  # (n, T) bool
    position: torch.Tensor  # (N,) long: each catalogue row's text, -1 where the row has none

    @classmethod
    @torch.inference_mode()
    def compute(cls, tower: TextTower, texts: list[str], max_length: int, batch_size: int = 64,
                progress: bool = False) -> "LowerTextStates":
        """Run MiniLM's embeddings and its frozen layers over every non-empty text (one per
        catalogue row, "" for rows without text)."""
        from tokenizers import Tokenizer
        from tqdm.auto import tqdm

        base = _base_model(tower.base_path)
        tokenizer = Tokenizer.from_file(str(Path(tower.base_path) / "tokenizer.json"))
        tokenizer.enable_truncation(max_length)
        tokenizer.no_padding()
        rows = [i for i, text in enumerate(texts) if text]
        tokens = [e.ids for e in tokenizer.encode_batch([texts[i] for i in rows])]
        order = sorted(range(len(rows)), key=lambda j: len(tokens[j]))  # each batch pads only to its longest
        width = max((len(t) for t in tokens), default=1)
        states = torch.zeros(len(rows), width, tower.layers[0].attention.self.query.in_features, dtype=torch.float16)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for start in tqdm(range(0, len(rows), batch_size), desc="text layers below the tuned ones", disable=not progress):
            chunk = order[start:start + batch_size]
            longest = max(len(tokens[j]) for j in chunk)
            ids = torch.zeros(len(chunk), longest, dtype=torch.long)  # [PAD] is id 0, and masked anyway
            real = torch.zeros(len(chunk), longest, dtype=torch.bool)
            for k, j in enumerate(chunk):
                ids[k, :len(tokens[j])], real[k, :len(tokens[j])] = torch.tensor(tokens[j]), True
            hidden = _run_layers(base.encoder.layer[:tower.first], base.embeddings(input_ids=ids), real)
            states[chunk, :longest], mask[chunk, :longest] = hidden.half(), real
        position = torch.full((len(texts),), -1, dtype=torch.long)
        position[torch.as_tensor(rows, dtype=torch.long)] = torch.arange(len(rows))
        return cls(states, mask, position)

    def to(self, device: torch.device) -> "LowerTextStates":
        return LowerTextStates(self.states.to(device), self.mask.to(device), self.position.to(device))

    def cut(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The states and mask at `positions`, cut to their longest text."""
        mask = self.mask[positions]
        width = max(int(mask.sum(dim=1).max()), 1) if len(positions) else 1
        return self.states[positions, :width], mask[:, :width]

    @torch.no_grad()
    def vectors(self, tower: TextTower, batch_size: int = 64) -> torch.Tensor:
        """(n, d) text vectors of every text through `tower`, without gradients."""
        out = torch.zeros(len(self.states), self.states.shape[-1], device=self.states.device)
        order = torch.argsort(self.mask.sum(dim=1))  # texts of similar length share a batch
        for chunk in order.split(batch_size):
            out[chunk] = tower(*self.cut(chunk))
        return out


def tuned_encoder_name(tower: TextTower) -> str:
    """The served folder's name: the base model's and the tuned weights' (so caches and ONNX
    exports made for one tuning are never taken for another)."""
    from dynrec.encoders.text import text_model_name
    from dynrec.models.runtime import weights_fingerprint

    return f"{text_model_name(tower.base_path)}-tuned-{weights_fingerprint(tower)}"


def save_tuned_encoder(tower: TextTower, folder: Path) -> None:
    """A whole MiniLM folder with the tower's layers in place of the base model's top ones."""
    base = _base_model(tower.base_path)
    with torch.no_grad():
        for block, tuned in zip(base.encoder.layer[tower.first:], tower.layers):
            block.load_state_dict(tuned.state_dict())
    temp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    base.save_pretrained(temp)
    for name in TOKENIZER_FILES:
        if (Path(tower.base_path) / name).is_file():
            shutil.copy(Path(tower.base_path) / name, temp / name)
    shutil.rmtree(folder, ignore_errors=True)
    temp.rename(folder)


def sampled_positions(targets: torch.Tensor, position: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `count` distinct target items with text, at random: (catalogue rows, text positions)."""
    rows = torch.unique(targets[targets >= 0])
    rows = rows[position[rows] >= 0]
    rows = rows[torch.randperm(len(rows), device=rows.device)[:count]]
    return rows, position[rows]

