"""Data layer: canonical schemas, sources (the team's own files, or a bundled example), indexed
interactions and splits."""

from dynrec.data.dataset import Dataset
from dynrec.data.files import DataFileNotFoundError
from dynrec.data.interactions import Interactions
from dynrec.data.movielens import BUNDLED, load_bundled, load_ml1m, load_ml100k
from dynrec.data.sources import LoadReport, SourceError, load_source, load_tables
from dynrec.data.splits import ColdItemSplit, LeaveOneOutSplit, cold_item_split, leave_one_out

__all__ = [
    "BUNDLED",
    "ColdItemSplit",
    "DataFileNotFoundError",
    "Dataset",
    "Interactions",
    "LeaveOneOutSplit",
    "LoadReport",
    "SourceError",
    "cold_item_split",
    "leave_one_out",
    "load_bundled",
    "load_ml100k",
    "load_ml1m",
    "load_source",
    "load_tables",
]
