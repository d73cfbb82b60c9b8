"""The cold-start attribute prior, fitted on ML-1M's users (gender, age band; occupation on request)."""

import numpy as np
import pytest

from dynrec.config import ColdStartConfig
from dynrec.data import Interactions
from dynrec.serving.prior import AttributePrior


@pytest.fixture(scope="module")
def prior(ml1m):
    return AttributePrior.fit(ml1m.users, Interactions.from_dataset(ml1m), ColdStartConfig())


def test_no_known_attribute_means_no_prior(prior):
    assert prior.scores({}) is None
    assert prior.scores({"gender": "X", "shoe_size": "9"}) is None


def test_groups_get_different_top_items_and_a_readable_label(prior, ml1m):
    women, men = prior.scores({"gender": "F", "age": "18-24"}), prior.scores({"gender": "M", "age": "18-24"})
    assert women.shape == (ml1m.items.num_rows,)
    assert len(set(np.argsort(-women)[:20]) & set(np.argsort(-men)[:20])) < 18
    assert prior.label({"gender": "F", "age": "18-24", "occupation": "writer"}) == "women aged 18-24"  # not configured
    with_job = AttributePrior.fit(ml1m.users, Interactions.from_dataset(ml1m), ColdStartConfig(attributes=("gender", "age", "occupation")))
    assert with_job.label({"gender": "F", "age": "18-24", "occupation": "writer"}) == "women aged 18-24 (writer)"


def test_group_counts_respect_excluded_users(ml1m):
    interactions = Interactions.from_dataset(ml1m)
    full = AttributePrior.fit(ml1m.users, interactions, ColdStartConfig())
    without = AttributePrior.fit(ml1m.users, interactions, ColdStartConfig(), exclude_users={"1", "2", "3"})
    assert full.groups[("gender", "F")][1] == without.groups[("gender", "F")][1] + 1  # user 1 is a woman
