"""Catalogue content embeddings with a content-addressed cache.

Encoding a catalogue's text and images is the slowest offline step, yet items rarely change, so
vectors are cached by a hash of the exact content the encoder saw. Re-running on a grown or edited
catalogue only encodes what is new, and the same cache serves any dataset with shared content.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dynrec.config import EncoderConfig, RuntimeConfig

if TYPE_CHECKING:
    from dynrec.encoders.image import ImageEncoder
    from dynrec.encoders.text import TextEncoder

_SENTENCE_END = (".", "!", "?")


def is_missing(value: Any) -> bool:
    """None, NaN, or pandas' NA/NaT: the shapes an absent value takes once Arrow is read as numpy
    or pandas. Ray Data re-infers a column from Python objects between stages, so a batch whose
    images are all null reaches the next stage as float NaN, not None."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    pandas = sys.modules.get("pandas")  # without pandas loaded there is no pd.NA to meet
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _clean(value: Any) -> str:
    return "" if is_missing(value) else str(value).strip()


def has_text(title: Any, text: Any) -> bool:
    """Whether an item's text is worth encoding: a title or a description (categories alone say
    too little to stand for the item)."""
    return bool(_clean(title) or _clean(text))


def item_text(title: Any, categories: Any, text: Any) -> str:
    """The string the text encoder sees: "Title. Category, Category. Description."

    Categories go between title and description so they survive truncation of long abstracts.
    Any part may be missing in any shape (see is_missing); categories may be any sequence.
    """
    parts = [
        _clean(title),
        ", ".join(c for c in map(_clean, [] if is_missing(categories) else categories) if c),
        _clean(text),
    ]
    return " ".join(p if p.endswith(_SENTENCE_END) else p + "." for p in parts if p)


def content_hash(data: bytes | str) -> str:
    """sha256 hex of the bytes (strings as UTF-8): stable across runs, machines and Python versions."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


class EmbeddingCache:
    """Content hash -> vector, one Parquet file per encoder under `directory`.

    The file name (`<name>.parquet`, e.g. `text-all-MiniLM-L6-v2-len128.parquet`) carries the
    encoder identity and settings, so a change of model or parameters starts a fresh file instead
    of mixing incompatible vectors. Columns: `content_hash` (string) and `embedding`
    (fixed_size_list<float32>[dim]). Each lookup re-reads the file and writes by temp file +
    `os.replace`, so readers never see a partial file; concurrent writers are last-one-wins.
    A row may be all-NaN: callers use that to record "this content could not be encoded".
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.parquet"

    def load(self, name: str, dim: int) -> tuple[list[str], np.ndarray]:
        """All cached (hashes, (m, dim) vectors) for `name`; empty when there is no file yet."""
        path = self.path(name)
        if not path.is_file():
            return [], np.zeros((0, dim), dtype=np.float32)
        table = pq.read_table(path)
        flat = table["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = flat.astype(np.float32, copy=False).reshape(len(table), -1 if len(table) else dim)
        if vectors.shape[1] != dim:
            raise ValueError(f"{path} holds {vectors.shape[1]}-d vectors, expected {dim}-d")
        return table["content_hash"].to_pylist(), vectors

    def lookup_or_compute(
        self, name: str, hashes: list[str], compute: Callable[[list[int]], np.ndarray], dim: int
    ) -> np.ndarray:
        """(n, dim) vectors for `hashes` in input order, computing and storing only the misses.

        `compute` receives positions into `hashes` (one per distinct missing hash) and returns
        their vectors in that order.
        """
        cached_hashes, cached = self.load(name, dim)
        index = {h: i for i, h in enumerate(cached_hashes)}
        misses: dict[str, int] = {}
        for position, h in enumerate(hashes):
            if h not in index and h not in misses:
                misses[h] = position
        if misses:
            computed = np.asarray(compute(list(misses.values())), dtype=np.float32).reshape(len(misses), dim)
            for offset, h in enumerate(misses, start=len(cached_hashes)):
                index[h] = offset
            cached_hashes = cached_hashes + list(misses)
            cached = np.concatenate([cached, computed])
            self._write(name, cached_hashes, cached)
        return cached[[index[h] for h in hashes]].reshape(len(hashes), dim)

    def _write(self, name: str, hashes: list[str], vectors: np.ndarray) -> None:
        dim = vectors.shape[1]
        table = pa.table(
            {
                "content_hash": pa.array(hashes, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
            }
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(name)
        temp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(table, temp)
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)


def item_content_hash(text: str, image_hash: str | None) -> str:
    """One hash over everything the content encoders see for an item: its text and image bytes."""
    return content_hash(f"{text}\x00{image_hash or ''}")


@dataclass
class ContentEmbeddings:
    """Per-item content vectors aligned with the items table; masked rows are zeros."""

    text: np.ndarray
    text_mask: np.ndarray
    image: np.ndarray
    image_mask: np.ndarray


def image_bytes(image: Any) -> bytes | None:
    """The encoded bytes of an image given as the schema's {path, bytes} struct (inline bytes
    first), bytes or a local path. None for a missing value of any shape (see is_missing), a
    struct with neither part, empty bytes or an unreadable path: all mean "no image"."""
    if is_missing(image):
        return None
    if isinstance(image, dict):
        return image_bytes(image.get("bytes")) or image_bytes(image.get("path"))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image) or None
    if isinstance(image, (str, Path)):
        try:
            return Path(image).read_bytes()
        except OSError:
            return None
    raise TypeError(f"unsupported image type {type(image).__name__}")


def image_content_hash(image: Any) -> str | None:
    """Hash of the image's bytes (see image_bytes); None when there is no image.

    Only the hash is kept: the encoder re-reads the few files that miss the cache, so a large
    catalogue's images never have to sit in memory together.
    """
    data = image_bytes(image)
    return None if data is None else content_hash(data)


class CachedTextEncoder:
    """The text encoder behind the content cache: a string encoded before (by training, an earlier
    run, another dataset) is read back, not encoded again. The encoder itself is built, from
    `config` on the `runtime` backend, only when the cache misses (int8 and bf16 vectors are cached
    apart, see dynrec.encoders.paths.precision_suffix)."""

    def __init__(self, cache: EmbeddingCache, config: EncoderConfig, runtime: RuntimeConfig,
                 encoder: TextEncoder | None = None, progress: bool = False):
        from dynrec.encoders.paths import precision_suffix, text_path
        from dynrec.encoders.text import TextEncoder, text_cache_name

        self.cache, self.config, self.runtime, self.encoder, self.progress = cache, config, runtime, encoder, progress
        self.dim = TextEncoder.dim
        self.name = encoder.cache_name if encoder else text_cache_name(config.text_model_path, config.text_max_length) \
            + precision_suffix(text_path(runtime), runtime.int8)

    def encode(self, texts: list[str]) -> np.ndarray:
        def compute(positions: list[int]) -> np.ndarray:
            from dynrec.encoders.text import TextEncoder

            self.encoder = self.encoder or TextEncoder.from_config(self.config, self.runtime)
            return self.encoder.encode([texts[p] for p in positions], progress=self.progress)

        return self.cache.lookup_or_compute(self.name, [content_hash(t) for t in texts], compute, self.dim)


class CachedImageEncoder:
    """The image encoder behind the content cache, keyed by the hash of each image's bytes. Items
    with no image, or an unreadable path, are masked without touching the encoder; bytes the encoder
    cannot decode are cached as an all-NaN row, so they are not retried on every run, and come back
    masked."""

    def __init__(self, cache: EmbeddingCache, config: EncoderConfig, runtime: RuntimeConfig,
                 encoder: ImageEncoder | None = None, progress: bool = False):
        from dynrec.encoders.image import ImageEncoder, image_encoder_cache_name

        self.cache, self.config, self.runtime, self.encoder, self.progress = cache, config, runtime, encoder, progress
        self.dim = ImageEncoder.dim
        self.name = encoder.cache_name if encoder else \
            image_encoder_cache_name(config.image_weights_path, config.image_size, runtime)

    def encode(self, images: list) -> tuple[np.ndarray, np.ndarray]:
        hashes = [image_content_hash(image) for image in images]
        rows = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
        features = np.zeros((len(images), self.dim), dtype=np.float32)
        valid = np.zeros(len(images), dtype=bool)
        if not len(rows):
            return features, valid

        def compute(positions: list[int]) -> np.ndarray:
            from dynrec.encoders.image import ImageEncoder

            self.encoder = self.encoder or ImageEncoder.from_config(self.config, self.runtime)
            computed, decoded = self.encoder.encode([images[rows[p]] for p in positions], progress=self.progress)
            computed[~decoded] = np.nan
            return computed

        vectors = self.cache.lookup_or_compute(self.name, [hashes[i] for i in rows], compute, self.dim)
        decoded = np.isfinite(vectors).all(axis=1)
        features[rows[decoded]], valid[rows[decoded]] = vectors[decoded], True
        return features, valid


def catalogue_texts(items: pa.Table) -> list[str]:
    """What the text encoder sees for each row of `items` (see item_text), "" where a row has no
    title or text (see has_text)."""
    titles, texts, categories = items["title"].to_pylist(), items["text"].to_pylist(), items["categories"].to_pylist()
    return [item_text(t, c, x) if has_text(t, x) else "" for t, c, x in zip(titles, categories, texts)]


def encode_catalogue(
    items: pa.Table,
    cache_dir: str | Path,
    text_encoder: TextEncoder | None = None,
    image_encoder: ImageEncoder | None = None,
    config: EncoderConfig | None = None,
    progress: bool = True,
    runtime: RuntimeConfig | None = None,
) -> ContentEmbeddings:
    """Text and image embeddings for every row of `items`, through the cache in `cache_dir` (see
    CachedTextEncoder and CachedImageEncoder).

    Text is `item_text(title, categories, text)`; it is masked only when an item has neither title
    nor text (categories alone say too little to stand for the item).
    """
    cache = EmbeddingCache(cache_dir)
    config, runtime = config or EncoderConfig(), runtime or RuntimeConfig()
    strings = catalogue_texts(items)
    text_mask = np.array([bool(t) for t in strings], bool)
    text_rows = np.flatnonzero(text_mask)
    cached_text = CachedTextEncoder(cache, config, runtime, text_encoder, progress)
    text = np.zeros((items.num_rows, cached_text.dim), dtype=np.float32)
    text[text_rows] = cached_text.encode([strings[i] for i in text_rows])
    image, image_mask = CachedImageEncoder(cache, config, runtime, image_encoder, progress).encode(items["image"].to_pylist())
    return ContentEmbeddings(text, text_mask, image, image_mask)
