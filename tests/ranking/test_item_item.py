"""The served item-item term (dynrec.ranking.item_item): the blend's item-item part per user, its
candidates, its place in the ranking, and the reasons it gives."""

import dataclasses

import numpy as np
import pytest

from dynrec.eval.baselines import EASE
from dynrec.models.item_item import served_weights, sparsified, standardised
from dynrec.ranking.item_item import ItemItemTerm
from dynrec.ranking.prior import standardise
from dynrec.ranking.ranker import Filters, reasons_for, recommend, retrieve
from dynrec.state.sqlite import SqliteStore
from dynrec.users.sessions import UserSessions


@pytest.fixture(scope="module")
def ease(ml100k_interactions):
    return EASE(200.0).fit(ml100k_interactions)


def test_a_users_term_is_the_blends_item_item_part(ml100k_interactions, ease):
    interactions = ml100k_interactions
    term = ItemItemTerm(served_weights(ease, interactions.item_ids, 0.5, 50))
    user = 7
    seen = {interactions.item_ids[i] for i in interactions.items[interactions.indptr[user] : interactions.indptr[user + 1]]}
    expected = 0.5 * standardised(sparsified(ease, 50).score(interactions, np.array([user])))[0]
    mine = term.for_user(seen)
    assert np.allclose(mine.by_position, expected, atol=1e-5)
    assert mine.of(["no-such-item"])[0] == pytest.approx(mine.unsupported)
    assert mine.unsupported == pytest.approx(expected[np.flatnonzero(term.scores(seen) == 0)[0]])  # what no seen item speaks for
    best = [interactions.item_ids[i] for i in np.argsort(-expected, kind="stable")[:6]]
    assert mine.top(5, set(), lambda i: i != best[0]) == best[1:6]  # best first, skipping what is not allowed
    assert mine.top(4, {best[1]}, lambda i: i != best[0]) == best[2:6]  # nor what is excluded
    assert term.for_user({"no-such-item"}) is None
    uncatalogued = ItemItemTerm(served_weights(ease, interactions.item_ids, 0.5, 50), {i: 0 for i in best[1:]})
    assert uncatalogued.for_user(seen).top(5, set()) == best[1:6]  # an item the catalogue lacks is never put forward
    assert ItemItemTerm(served_weights(ease, interactions.item_ids, 0.0, 50)).for_user(seen) is None  # weight 0: no term


@pytest.fixture
def ranked_with_term(served, fill, tmp_path, ml100k_interactions, ease):
    """`with_weight(w)`: the served catalogue with the ML-100k term at weight `w`, and user 1's view."""
    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.db")))
    view = UserSessions(served.config, catalog).view("1")

    def with_weight(weight: float):
        catalog.item_item = ItemItemTerm(served_weights(ease, ml100k_interactions.item_ids, weight, 200))
        return catalog, view

    return with_weight


def test_the_ranking_adds_the_term_to_the_models_standardised_score(ranked_with_term):
    catalog, view = ranked_with_term(0.5)
    ids, scores = retrieve(catalog, view, 20, view.seen, None)
    own = standardise(catalog.vectors(ids) @ view.embedding, catalog.score_sample @ view.embedding)
    assert np.allclose(scores, own + catalog.item_item.for_user(view.seen).of(ids), atol=1e-5)
    assert list(scores) == sorted(scores, reverse=True) and not set(ids) & view.seen
    catalog.item_item = None  # the model alone: the index's own top
    assert retrieve(catalog, view, 20, view.seen, None)[0] == catalog.index.search(view.embedding, 20, view.seen, None)[0]


def test_a_strong_term_brings_its_own_candidates_and_respects_filters_and_hidden_items(ranked_with_term):
    catalog, view = ranked_with_term(1e4)  # the term outweighs the model: the list is the term's top
    term = catalog.item_item.for_user(view.seen)
    top = term.top(10, view.seen, lambda i: True)
    assert retrieve(catalog, view, 10, view.seen, None)[0] == top
    model_pool = set(catalog.index.search(view.embedding, catalog.config.serving.candidates, view.seen, None)[0])
    assert set(top) - model_pool, "every item the term put forward was among the model's candidates anyway"
    genre = catalog.item(top[0]).categories[0]
    filtered = retrieve(catalog, view, 10, view.seen, Filters(exclude_categories=[genre]).accepts(catalog))[0]
    assert filtered and all(genre not in catalog.item(i).categories for i in filtered)
    catalog.store.hide(top[0])
    catalog.sync(force=True)
    assert top[0] not in retrieve(catalog, view, 10, view.seen, None)[0]


def test_an_item_the_term_put_forward_is_explained_by_the_history_item_chosen_with_it(ranked_with_term):
    catalog, view = ranked_with_term(100.0)
    ranked = recommend(catalog, view, 10, Filters(), True, 200, 0.0, new_item_slots=0)
    together = [r for r in ranked if r.reason.startswith("Often chosen with “")]
    assert len(together) >= 5
    liked = {e[0]: e for e in view.recent if e[1] != "rating" or e[3] > catalog.config.model.value_center}
    for r in together:
        cited = [i for i, e in liked.items() if r.reason.startswith(f"Often chosen with “{catalog.item(i).title}”")]
        assert cited, r.reason
        weights = catalog.item_item.between(list(liked), [r.item_id])[:, 0]
        assert weights[list(liked).index(cited[0])] == pytest.approx(weights.max()) and weights.max() > 0
    catalog, view = ranked_with_term(0.0)  # no term: the model's own reasons
    assert not [r for r in reasons_for(catalog, [r.item_id for r in ranked], view) if r.startswith("Often chosen")]
    disliked = dataclasses.replace(view, recent=[(e[0], "rating", e[2], 1.0) for e in view.recent])
    catalog, _ = ranked_with_term(100.0)  # a 1★ is never given as a reason
    assert not [r for r in reasons_for(catalog, [r.item_id for r in ranked], disliked) if r.startswith("Often chosen")]


def test_weights_between_items_are_the_kept_ones(ml100k_interactions, ease):
    ids = list(ml100k_interactions.item_ids)
    term = ItemItemTerm(served_weights(ease, ids, 1.0, 20))
    kept = sparsified(ease, 20).weights_
    had, items = [ids[0], ids[7], ids[300]], [ids[i] for i in (0, 1, 2, 50, 100, 181, 1000)] + [ids[int(np.argmax(kept[7]))]]
    expected = kept[np.ix_([0, 7, 300], [ids.index(i) for i in items])]
    assert np.allclose(term.between(had, items), expected) and (expected != 0).any()
