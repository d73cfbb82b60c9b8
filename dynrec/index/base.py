"""The index protocol, its settings, and versioned save/load shared by both implementations."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np

from dynrec.config import IndexConfig

META_FILE = "index.json"
CURRENT_FILE = "CURRENT"


class ItemIndex(Protocol):
    """Item ids (strings) -> unit vectors, searched by inner product.

    Every mutation is atomic for readers: a search sees the index before or after an upsert or
    removal, never in between. `version` counts applied mutations and is saved with the index.
    """

    kind: str
    dim: int
    version: int
    model_version: str

    def __len__(self) -> int: ...

    def __contains__(self, item_id: str) -> bool: ...

    def ids(self) -> list[str]: ...

    def upsert(self, item_ids: Iterable[str], vectors: np.ndarray) -> None: ...

    def remove(self, item_ids: Iterable[str]) -> int: ...

    def vector(self, item_id: str) -> np.ndarray: ...

    def vectors(self, item_ids: list[str]) -> np.ndarray:
        """(len(item_ids), dim) in one read: per-id calls cost ~16 µs each in usearch."""
        ...

    def search(
        self, query: np.ndarray, k: int, exclude: Iterable[str] = ()
    ) -> tuple[list[str], np.ndarray]: ...

    def save(self, directory: str | Path) -> Path: ...


def make_index(dim: int, expected_items: int, config: IndexConfig | None = None, model_version: str = "") -> ItemIndex:
    """An empty index suited to a catalogue of `expected_items` (see `IndexConfig.kind`)."""
    from dynrec.index.exact import ExactIndex
    from dynrec.index.hnsw import HnswIndex

    config = config or IndexConfig()
    kind = config.kind
    if kind == "auto":
        kind = "exact" if expected_items <= config.exact_max_items else "hnsw"
    if kind == "exact":
        return ExactIndex(dim, model_version=model_version)
    if kind == "hnsw":
        return HnswIndex(dim, config, model_version=model_version)
    raise ValueError(f"index kind must be auto, exact or hnsw, got '{config.kind}'")


def fitted_index(index: ItemIndex, expected_items: int, config: IndexConfig | None = None) -> ItemIndex:
    """`index` itself while its kind suits `expected_items`; otherwise a copy of it in the kind that
    does (with `kind: auto`, an exact index becomes HNSW once the catalogue outgrows
    `exact_max_items`). Called before a bulk insert, so a growing catalogue keeps fast search."""
    wanted = make_index(index.dim, expected_items, config, model_version=index.model_version)
    if wanted.kind == index.kind:
        return index
    ids = index.ids()
    for start in range(0, len(ids), 65536):
        chunk = ids[start : start + 65536]
        wanted.upsert(chunk, index.vectors(chunk))
    return wanted


def load_index(directory: str | Path) -> ItemIndex:
    """Whichever index was saved in `directory`."""
    from dynrec.index.exact import ExactIndex
    from dynrec.index.hnsw import HnswIndex

    _, meta = read_meta(directory)
    return {"exact": ExactIndex, "hnsw": HnswIndex}[meta["kind"]].load(directory)


def read_meta(directory: str | Path) -> tuple[Path, dict]:
    """The folder of the current saved version in `directory`, and its metadata."""
    pointer = Path(directory) / CURRENT_FILE
    if not pointer.is_file():
        raise FileNotFoundError(f"no saved index in {directory} (missing {CURRENT_FILE})")
    folder = Path(directory) / pointer.read_text().strip()
    return folder, json.loads((folder / META_FILE).read_text())


def write_version(directory: str | Path, meta: dict, write_payload: Callable[[Path], None], keep: int = 2) -> Path:
    """Save one version into its own folder, then atomically repoint `CURRENT` at it.

    A loader follows `CURRENT`, so it reads the previous version or the new one, never a mix.
    The newest `keep` versions stay on disk for loaders that started before the switch.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"v{meta['version']:010d}-{uuid.uuid4().hex[:8]}"
    folder = directory / name
    folder.mkdir()
    write_payload(folder)
    (folder / META_FILE).write_text(json.dumps(meta))
    temp = directory / f".{CURRENT_FILE}.{uuid.uuid4().hex}"
    temp.write_text(name)
    os.replace(temp, directory / CURRENT_FILE)
    versions = sorted((p for p in directory.glob("v*-*") if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)
    for old in versions[:-keep]:
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def as_matrix(vectors: np.ndarray, dim: int, count: int) -> np.ndarray:
    """`vectors` as a C-contiguous (count, dim) float32 matrix, or a clear error."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.size != count * dim or (matrix.ndim and matrix.shape[-1] != dim):
        raise ValueError(f"expected {count} vectors of dimension {dim}, got shape {np.shape(vectors)}")
    matrix = matrix.reshape(count, dim)
    if not np.isfinite(matrix).all():
        raise ValueError("vectors must be finite")
    return matrix
