"""Data layer: canonical schemas, loaders, indexed interactions and splits."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from dynrec.data.dataset import Dataset
from dynrec.data.files import DataFileNotFoundError
from dynrec.data.generic import load_tables
from dynrec.data.interactions import Interactions
from dynrec.data.movielens import load_ml1m, load_ml100k
from dynrec.data.splits import ColdItemSplit, LeaveOneOutSplit, cold_item_split, leave_one_out

LOADERS: dict[str, Callable[[Path], Dataset]] = {"ml-1m": load_ml1m, "ml-100k": load_ml100k}


def load_dataset(name: str, data_dir: str | Path) -> Dataset:
    """Load a bundled dataset by name from the data folder."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset '{name}'; choose one of {sorted(LOADERS)}")
    return LOADERS[name](Path(data_dir))


__all__ = [
    "ColdItemSplit",
    "DataFileNotFoundError",
    "Dataset",
    "Interactions",
    "LOADERS",
    "LeaveOneOutSplit",
    "cold_item_split",
    "leave_one_out",
    "load_dataset",
    "load_ml100k",
    "load_ml1m",
    "load_tables",
]
