"""Everything a training run or an evaluation needs, prepared once from the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynrec.config import DynrecConfig
from dynrec.data import Dataset, Interactions, LeaveOneOutSplit, leave_one_out, load_source
from dynrec.data.schemas import NOT_INTERACTIONS
from dynrec.encoders.content import catalogue_texts, encode_catalogue
from dynrec.models.model import Catalogue


@dataclass
class TrainingInputs:
    dataset: Dataset
    interactions: Interactions
    split: LeaveOneOutSplit
    catalogue: Catalogue
    created_at: np.ndarray  # (N,) unix seconds, -1 where unknown
    texts: list[str]  # (N,) what the text encoder sees of each item, "" where it has no text


def prepare_inputs(config: DynrecConfig, progress: bool = True, dataset: Dataset | None = None) -> TrainingInputs:
    """Load the configured source (or take `dataset`), split it, and fetch the catalogue's content
    embeddings (cached)."""
    dataset = dataset if dataset is not None else load_source(config)
    interactions = Interactions.from_dataset(dataset, exclude_types=NOT_INTERACTIONS)
    split = leave_one_out(interactions, config.data.min_interactions)
    n = dataset.items.num_rows
    if {"text", "image"} & set(config.model.modalities):
        content = encode_catalogue(dataset.items, config.paths.cache, config=config.encoders, progress=progress, runtime=config.runtime)
        catalogue = Catalogue.from_arrays(content.text, content.text_mask, content.image, content.image_mask)
    else:  # ID/behaviour-only models never read content, so skip the encoders entirely
        catalogue = Catalogue.from_arrays(np.zeros((n, 1)), np.zeros(n, bool), np.zeros((n, 1)), np.zeros(n, bool))
    created_at = dataset.items["created_at"].cast("int64").fill_null(-1).to_numpy()
    return TrainingInputs(dataset, interactions, split, catalogue, created_at, catalogue_texts(dataset.items))
