"""torch -> ONNX export of the five inference graphs, with dynamic batch and sequence axes.

Each graph is a thin module with a fixed, named signature, so the torch path and the ONNX path
are called the same way. Exports go through the TorchScript exporter (`dynamo=False`): it needs
no extra packages and handles the data-dependent masks in these models. Files are written under a
temp name and renamed, so a concurrent loader never sees half a model.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dynrec.models.fusion import ItemFusion
from dynrec.models.user import UserEncoder

OPSET = 17


class TextGraph(nn.Module):
    """(input_ids, attention_mask) -> unit sentence embeddings (B, 384)."""

    inputs = ("input_ids", "attention_mask")

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model  # registered, so export sees the weights as parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed_tokens(input_ids, attention_mask)


class ImageGraph(nn.Module):
    """(pixels (B, 3, S, S)) -> pooled features (B, 1280)."""

    inputs = ("pixels",)

    def __init__(self, encoder):
        super().__init__()
        self.model = encoder.model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)


class FusionGraph(nn.Module):
    """Item features -> L2-normalised item embeddings (N, dim); one behaviour snapshot per item."""

    inputs = ("item_index", "text", "text_mask", "image", "image_mask", "behaviour")

    def __init__(self, fusion: ItemFusion):
        super().__init__()
        self.fusion = fusion

    def forward(self, item_index, text, text_mask, image, image_mask, behaviour) -> torch.Tensor:
        uses = self.fusion.modalities
        return self.fusion(
            item_index,
            text if "text" in uses else None,
            text_mask if "text" in uses else None,
            image if "image" in uses else None,
            image_mask if "image" in uses else None,
            behaviour if "behaviour" in uses else None,
        )


class UserGraph(nn.Module):
    """Right-padded windows (B, T, ...) and their lengths -> each user's embedding at its last event."""

    inputs = ("items", "event_types", "gaps", "values", "lengths")

    def __init__(self, user: UserEncoder):
        super().__init__()
        self.user = user

    def forward(self, items, event_types, gaps, values, lengths) -> torch.Tensor:
        return self.user.embed(items, event_types, gaps, values, lengths)


class UserStepGraph(nn.Module):
    """One user's new events after the earlier events of the window, given by each layer's cached
    keys and values of them (`past_keys_<layer>`, `past_values_<layer>`: (P, dim)) -> the embedding
    at the last new event (dim,) and the new events' keys and values (`present`: (T, layers * 2 *
    dim)): UserEncoder.extend. With no earlier events (P = 0) it encodes a whole window and
    returns every event's keys and values."""

    outputs = ("embedding", "present")

    def __init__(self, user: UserEncoder):
        super().__init__()
        self.user = user
        self.past = [name for layer in range(len(user.blocks)) for name in (f"past_keys_{layer}", f"past_values_{layer}")]
        self.inputs = ("items", "event_types", "gaps", "values", *self.past)
        self.dynamic_axes = {
            **{name: {0: "new"} for name in ("items", "event_types", "gaps", "values")},
            **{name: {0: "past"} for name in self.past},
            "present": {0: "new"},
        }

    def forward(self, items, event_types, gaps, values, *past) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.extend(items, event_types, gaps, values, list(zip(past[0::2], past[1::2])))


def fusion_example(fusion: ItemFusion, n: int = 3, behaviour_dim: int | None = None) -> dict[str, torch.Tensor]:
    """Random inputs of the right shapes for `fusion` (unused modalities get 1-wide placeholders)."""
    dims = {m: p[0].in_features for m, p in fusion.projections.items()}
    generator = torch.Generator().manual_seed(n)
    return {
        "item_index": torch.arange(n, dtype=torch.long),
        "text": torch.randn(n, dims.get("text", 1), generator=generator),
        "text_mask": torch.ones(n, dtype=torch.bool),
        "image": torch.randn(n, dims.get("image", 1), generator=generator),
        "image_mask": torch.ones(n, dtype=torch.bool),
        "behaviour": torch.randn(n, behaviour_dim or dims.get("behaviour", 1), generator=generator),
    }


def user_example(user: UserEncoder, batch: int = 2, length: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 100 + length)
    dim = user.position.embedding_dim
    return {
        "items": torch.nn.functional.normalize(torch.randn(batch, length, dim, generator=generator), dim=-1),
        "event_types": torch.zeros(batch, length, dtype=torch.long),
        "gaps": torch.rand(batch, length, generator=generator) * 86400,
        "values": torch.randint(1, 6, (batch, length), generator=generator).float(),
        "lengths": torch.full((batch,), length, dtype=torch.long),
    }


def user_step_example(user: UserEncoder, past: int = 4, new: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(past * 100 + new)
    dim = user.position.embedding_dim
    return {
        "items": torch.nn.functional.normalize(torch.randn(new, dim, generator=generator), dim=-1),
        "event_types": torch.zeros(new, dtype=torch.long),
        "gaps": torch.rand(new, generator=generator) * 86400,
        "values": torch.randint(1, 6, (new,), generator=generator).float(),
        **{name: torch.randn(past, dim, generator=generator) for name in UserStepGraph(user).past},
    }


DYNAMIC_AXES = {
    TextGraph: {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
    ImageGraph: {"pixels": {0: "batch"}},
    FusionGraph: {name: {0: "items"} for name in FusionGraph.inputs},
    UserGraph: {
        "items": {0: "batch", 1: "sequence"},
        "event_types": {0: "batch", 1: "sequence"},
        "gaps": {0: "batch", 1: "sequence"},
        "values": {0: "batch", 1: "sequence"},
        "lengths": {0: "batch"},
    },
}
OUTPUT_AXIS = {TextGraph: "batch", ImageGraph: "batch", FusionGraph: "items", UserGraph: "batch"}


def export_graph(graph: nn.Module, example: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Export `graph` (one of the *Graph modules) to `path` with its dynamic axes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
    kind = type(graph)
    outputs = getattr(graph, "outputs", ("embedding",))
    # a graph whose inputs depend on the model (UserStepGraph: one pair per layer) names its own axes
    axes = getattr(graph, "dynamic_axes", None) or {**DYNAMIC_AXES[kind], "embedding": {0: OUTPUT_AXIS[kind]}}
    graph = graph.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter warns about its own deprecation and about traced shape arithmetic
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(example[name] for name in graph.inputs),
            str(temp),
            dynamo=False,
            input_names=list(graph.inputs),
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    os.replace(temp, path)
    return path


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max absolute difference and the smallest row-wise cosine between two (n, d) outputs."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = (reference * candidate).sum(axis=1) / np.maximum(norms, 1e-12)
    return {"max_abs_diff": float(np.abs(reference - candidate).max()), "min_cosine": float(cosine.min())}
