"""Ranking with a user's long-term interests, in-process on the served ML-100k model: candidates
retrieved along each interest in proportion to its share, a ranking that scores both states, and
interests left out when the user is ranked with another model's catalogue."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from dynrec.ranking.ranker import Filters, matching_catalogue, quotas, recommend, retrieve
from dynrec.state.sqlite import SqliteStore
from dynrec.users.interests import ItemSpace, unit_rows
from dynrec.users.sessions import UserSessions

NEIGHBOURHOOD = 100  # an interest's neighbourhood: the items nearest its direction


def test_quotas_split_a_total_by_share_largest_remainder_first():
    assert quotas(10, np.array([0.5, 0.3, 0.2])).tolist() == [5, 3, 2]
    assert quotas(5, np.array([0.45, 0.35, 0.2])).tolist() == [2, 2, 1]
    rng = np.random.default_rng(0)
    for _ in range(100):
        shares = rng.dirichlet(np.ones(rng.integers(1, 5)))
        total = int(rng.integers(0, 60))
        split = quotas(total, shares)
        assert split.sum() == total and np.all(np.abs(split - total * shares) < 1)


@pytest.fixture
def far_tastes(served, fill, tmp_path):
    """The catalogue, user 1's view, and that view with two interests the user embedding does not
    reach, shares 0.75 and 0.25: pointing (in the centred item space) at the item it scores lowest,
    and at the item among its 200 lowest farthest from that one; with each interest's neighbourhood."""
    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.db")))
    view = UserSessions(served.config, catalog).view("1")
    space = ItemSpace.of(catalog)
    unit = unit_rows(space.vectors(catalog.ids))
    lowest = np.argsort(catalog.vectors(catalog.ids) @ view.embedding, kind="stable")
    seeds = [lowest[0], lowest[int(np.argmin(unit[lowest[:200]] @ unit[lowest[0]]))]]
    with_interests = dataclasses.replace(view, interests=unit[seeds], interest_shares=np.array([0.75, 0.25]))
    neighbourhoods = [set(catalog.index.search(d, NEIGHBOURHOOD, view.seen, None)[0]) for d in with_interests.interests]
    return catalog, view, with_interests, neighbourhoods


def test_candidates_come_along_each_interest_by_its_share(served, far_tastes):
    catalog, alone, with_interests, neighbourhoods = far_tastes
    catalog.config = dataclasses.replace(served.config, interests=dataclasses.replace(served.config.interests, candidate_share=0.4))
    single, _ = retrieve(catalog, alone, 50, alone.seen, None)
    multi, _ = retrieve(catalog, with_interests, 50, alone.seen, None)
    assert len(multi) == 50 and not set(multi) & alone.seen
    assert all(not set(single) & n for n in neighbourhoods)  # the embedding alone reaches neither taste
    assert set(single[:30]) <= set(multi)  # 30 are the embedding's own top
    extra = set(multi) - set(single[:30])  # and 20 come along the interests, split 0.75 / 0.25
    assert len(extra) == 20 and extra <= neighbourhoods[0] | neighbourhoods[1]
    assert len(extra & neighbourhoods[0]) >= 15 and len(extra & neighbourhoods[1]) >= 5


def test_the_ranking_scores_the_interests_beside_the_embedding(served, far_tastes):
    catalog, alone, with_interests, neighbourhoods = far_tastes

    def top10(view, weight: float) -> list[str]:
        catalog.config = dataclasses.replace(served.config, interests=dataclasses.replace(served.config.interests, weight=weight))
        return [r.item_id for r in recommend(catalog, view, 10, Filters(), True, 200, 0.0, 0)]

    single = top10(alone, 0.1)
    assert top10(with_interests, 0.0) == single  # at weight 0 the embedding alone orders the list
    leaning = top10(with_interests, 3.0)
    assert set(leaning) & set().union(*neighbourhoods)  # weighted in, the interests bring their items up
    assert not set(leaning) & alone.seen


def test_a_user_ranked_with_an_earlier_models_catalogue_is_ranked_without_the_interests(far_tastes):
    catalog, alone, with_interests, _ = far_tastes
    earlier = SimpleNamespace(model_version="earlier-model")
    view = dataclasses.replace(with_interests, earlier={"earlier-model": alone.embedding})
    chosen, matched = matching_catalogue(view, [catalog, earlier])
    assert chosen is catalog and matched.interests is not None
    chosen, matched = matching_catalogue(dataclasses.replace(view, model_version="newer-model"), [earlier])
    assert chosen is earlier and matched.interests is None and matched.interest_shares is None
