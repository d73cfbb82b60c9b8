"""The cold-start attribute prior, fitted on ML-1M's users (gender, age band; occupation on request)."""

import numpy as np
import pytest

from dynrec.config import ColdStartConfig
from dynrec.data import Interactions
from dynrec.ranking.prior import AttributePrior


@pytest.fixture(scope="module")
def prior(ml1m):
    return AttributePrior.fit(ml1m.users, Interactions.from_dataset(ml1m), ColdStartConfig())


def test_no_known_attribute_gives_early_event_popularity(prior, ml1m):
    anyone = prior.scores({})
    np.testing.assert_array_equal(prior.scores({"gender": "X", "shoe_size": "9"}), anyone)
    assert prior.label({}) == "new users"
    interactions = Interactions.from_dataset(ml1m)
    all_time = AttributePrior.fit(ml1m.users, interactions, ColdStartConfig(first_events_scale=0)).scores({})
    first = interactions.items[interactions.indptr[:-1]]  # every user's first item
    top = lambda s: set(np.argsort(-s)[:10].tolist())
    # weighting by position pulls the items users start with up the ranking
    assert np.isin(first, list(top(anyone))).sum() > np.isin(first, list(top(all_time))).sum()


def test_groups_get_different_top_items_and_a_readable_label(prior, ml1m):
    women, men = prior.scores({"gender": "F", "age": "18-24"}), prior.scores({"gender": "M", "age": "18-24"})
    assert women.shape == (ml1m.items.num_rows,)
    assert not np.array_equal(np.argsort(-women)[:20], np.argsort(-men)[:20])
    # the item the prior favours most for women over men is one women reached more than men did
    count, size = prior.groups[("gender", "F")]
    count_m, size_m = prior.groups[("gender", "M")]
    leaning = int(np.argmax(women - men))
    assert count[leaning] / size > count_m[leaning] / size_m
    assert prior.label({"gender": "F", "age": "18-24", "occupation": "writer"}) == "new users who are women aged 18-24"  # not configured
    with_job = AttributePrior.fit(ml1m.users, Interactions.from_dataset(ml1m), ColdStartConfig(attributes=("gender", "age", "occupation")))
    assert with_job.label({"gender": "F", "age": "18-24", "occupation": "writer"}) == "new users who are women aged 18-24 (writer)"


def test_group_counts_respect_excluded_users(ml1m):
    interactions = Interactions.from_dataset(ml1m)
    full = AttributePrior.fit(ml1m.users, interactions, ColdStartConfig())
    without = AttributePrior.fit(ml1m.users, interactions, ColdStartConfig(), exclude_users={"1", "2", "3"})
    assert full.groups[("gender", "F")][1] == without.groups[("gender", "F")][1] + 1  # user 1 is a woman


def test_ranking_is_computed_once_per_attribute_combination(prior):
    first = prior.ranking({"gender": "F", "age": "25-34", "shoe_size": "9"})
    assert prior.known({"gender": "F", "age": "25-34"}) == [("gender", "F"), ("age", "25-34")]
    assert prior.ranking({"age": "25-34", "gender": "F"}) is first  # same known groups, same object
    assert prior.ranking({"gender": "F"}) is not first
    np.testing.assert_array_equal(first.scores, prior.scores({"gender": "F", "age": "25-34"}))
    assert first.scores[first.order[0]] == first.scores.max()
    assert abs(first.standardised.mean()) < 1e-6 and abs(first.standardised.std() - 1) < 1e-6
