"""Ranking for users with few events: the prior still counts, less with every event, then not at all."""

import dataclasses

from dynrec.ranking.ranker import Filters, prior_top, recommend, retrieve, similar_items
from dynrec.state.sqlite import SqliteStore
from dynrec.users.sessions import UserSessions
from dynrec.users.shards import Event


def test_prior_fades_as_a_new_user_acts(served):
    catalog = served.catalog()
    sessions = UserSessions(served.config, catalog)
    attributes = {"gender": "F", "age": "25"}
    prior_rows = set(prior_top(catalog, catalog.prior.ranking(attributes).order, 10, set(), None))

    def overlap_with_prior(n_events: int, blend: float) -> tuple[int, list[str]]:
        user_id = f"new-{n_events}-{blend}"
        sessions.apply([Event(user_id, catalog.ids[40 + 3 * n], "rating", 1_000_000 + n, 5.0) for n in range(n_events)])
        view = sessions.view(user_id, attributes)
        catalog.config = dataclasses.replace(served.config, cold_start=dataclasses.replace(served.config.cold_start, blend=blend))
        ids, _ = retrieve(catalog, view, 10, view.seen, None)
        return len({catalog.row[i] for i in ids} & prior_rows), ids

    blended_one, _ = overlap_with_prior(1, 4.0)
    model_one, _ = overlap_with_prior(1, 0.0)
    assert blended_one > model_one  # one event: the prior still shapes the top 10
    blended_three, _ = overlap_with_prior(3, 4.0)
    assert blended_three <= blended_one
    many = served.config.cold_start.blend_max_events + 1
    _, blended_many = overlap_with_prior(many, 4.0)
    view = sessions.view(f"new-{many}-4.0", attributes)
    assert blended_many == catalog.index.search(view.embedding, 10, view.seen, None)[0]  # beyond the cut-off: the model alone
    assert not set(blended_many) & view.seen


def test_hidden_items_never_come_back_on_any_ranking_path(served, fill, tmp_path):
    """Hidden items leave every index, so ranking no longer lists them as exclusions; each path
    that reads the prior or popularity instead must skip them itself."""
    store = fill(SqliteStore(tmp_path / "state.db"))
    catalog = served.catalog(store)
    sessions = UserSessions(served.config, catalog)
    attributes = {"gender": "F", "age": "25"}
    sessions.apply([Event("light", catalog.ids[40], "rating", 1_000_000, 5.0)])
    known, cold, light = sessions.view("1"), sessions.view("nobody", attributes), sessions.view("light", attributes)
    top = [r.item_id for r in recommend(catalog, known, 5, Filters(), False, 200, 0.0, 0)]
    prior = [catalog.ids[r] for r in prior_top(catalog, catalog.prior.ranking(attributes).order, 5, set(), None)]
    similar = [r.item_id for r in similar_items(catalog, "1", 5, Filters())]
    hidden = {*top[:2], *prior[:2], *similar[:2]} - {"1"}
    for item_id in hidden:
        store.hide(item_id)
    catalog.sync(force=True)
    assert hidden <= catalog.hidden
    for view in (known, cold, light):
        assert not {r.item_id for r in recommend(catalog, view, 50, Filters(), False, 200, 0.0, 1)} & hidden
    assert not {r.item_id for r in similar_items(catalog, "1", 50, Filters())} & hidden


def test_diversity_trades_relevance_for_results_less_alike(served, fill, tmp_path):
    """MMR over the candidates: at 0 the list is the pure top-k; raising it makes the results less
    similar to each other, still drawn from the candidates. Its own filled store: the HTTP tests
    erase users from the served one."""
    import numpy as np

    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.sqlite")))
    user = UserSessions(served.config, catalog).view("1")

    def ranked(diversity):
        return [r.item_id for r in recommend(catalog, user, 10, Filters(), True, 100, diversity, new_item_slots=0)]

    def mean_similarity(item_ids):
        vectors = catalog.vectors(item_ids)
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        pairs = vectors @ vectors.T
        return (pairs.sum() - len(item_ids)) / (len(item_ids) * (len(item_ids) - 1))

    top, _ = retrieve(catalog, user, 10, user.seen, None)
    candidates, _ = retrieve(catalog, user, 100, user.seen, None)
    plain, some, most = ranked(0.0), ranked(0.5), ranked(0.9)
    assert plain == top
    assert set(some) <= set(candidates) and set(most) <= set(candidates)
    assert mean_similarity(most) < mean_similarity(some) < mean_similarity(plain)


def test_a_request_is_ranked_with_the_catalogue_of_the_model_that_embedded_its_user():
    from types import SimpleNamespace

    import numpy as np

    from dynrec.ranking.ranker import matching_catalogue
    from dynrec.users.shards import ReasonBasis, UserView

    new, old = SimpleNamespace(model_version="new"), SimpleNamespace(model_version="old")
    e_old, e_new = np.zeros(4, np.float32), np.ones(4, np.float32)
    shard_not_switched = UserView("u", e_old, set(), [], model_version="old")
    shard_switched = UserView("u", e_new, set(), [], model_version="new", earlier={"old": e_old})
    catalogue, view = matching_catalogue(shard_not_switched, [new, old])
    assert catalogue is old and view.embedding is e_old and view.model_version == "old"
    catalogue, view = matching_catalogue(shard_switched, [new, old])
    assert catalogue is new and view.embedding is e_new
    catalogue, view = matching_catalogue(shard_switched, [old])  # a Ranker not switched yet
    assert catalogue is old and view.embedding is e_old and view.model_version == "old"
    catalogue, view = matching_catalogue(shard_not_switched, [new])  # nothing in common: a newcomer
    assert catalogue is new and view.embedding is None and view.model_version is None
    basis = ReasonBasis("new", [], e_new, np.zeros((0, 4), np.float32))
    with_basis = dataclasses.replace(shard_switched, reasons=basis)
    assert matching_catalogue(with_basis, [new, old])[1].reasons is basis
    assert matching_catalogue(with_basis, [old])[1].reasons is None  # the Ranker re-embeds under its own model


def test_segment_recommendations_fit_the_segment_and_respect_filters(served, fill, tmp_path):
    """ML-100k users segmented on the model's embeddings: a segment's list sits far closer to its
    centroid than the catalogue does, differs from another segment's, leans on what its members
    chose, and obeys filters and exclusions."""
    import numpy as np

    from dynrec.config import SegmentConfig
    from dynrec.ranking.ranker import for_segment
    from dynrec.segments import ItemInfo, fit_segments

    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.sqlite")))
    users = UserSessions(served.config, catalog).export()
    items = {m.item_id: ItemInfo(m.title, m.categories, m.text) for m in catalog.meta}
    segmentation = fit_segments(users, items, SegmentConfig(k=4))
    centroids = np.stack([segmentation.basis(s)[0] for s in range(segmentation.k)])
    s, t = np.unravel_index(np.argmin(centroids @ centroids.T), (segmentation.k, segmentation.k))  # the two least alike
    (a, popular_a), (b, popular_b) = segmentation.basis(int(s)), segmentation.basis(int(t))
    list_a = for_segment(catalog, a, popular_a, 10, Filters(), 200)
    list_b = for_segment(catalog, b, popular_b, 10, Filters(), 200)
    closeness = lambda ranked, centroid: float(np.mean(catalog.vectors([r.item_id for r in ranked]) @ centroid))  # noqa: E731
    for ranked, centroid in ((list_a, a), (list_b, b)):
        catalogue = catalog.score_sample @ centroid
        assert closeness(ranked, centroid) > catalogue.mean() + 2 * catalogue.std()
    assert [r.item_id for r in list_a] != [r.item_id for r in list_b]
    only_popularity = for_segment(catalog, a, popular_a, 10, Filters(), 200, popularity_weight=1.0)
    assert only_popularity[0].item_id == next(i for i in popular_a if catalog.visible(i))  # its members' most common
    assert all("of this segment's members" in r.reason for r in only_popularity)  # popularity alone drove them
    only_relevance = for_segment(catalog, a, popular_a, 10, Filters(), 200, popularity_weight=0.0)
    assert all(r.reason == "Close to this segment's taste" for r in only_relevance)
    genre = catalog.item(list_a[0].item_id).categories[0]
    filtered = for_segment(catalog, a, popular_a, 10, Filters(exclude_categories=[genre], exclude_item_ids=[list_a[1].item_id]), 200)
    assert len(filtered) == 10 and list_a[1].item_id not in {r.item_id for r in filtered}
    assert all(genre not in catalog.item(r.item_id).categories for r in filtered)


def test_a_reason_cites_a_liked_item_close_to_the_result_and_never_a_disliked_one(served, fill, tmp_path):
    import numpy as np

    from dynrec.ranking.ranker import cited, reasons_for
    from dynrec.users.shards import UserView

    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.sqlite")))
    result = "50"  # Star Wars
    twin = catalog.ids[int(np.argsort(-(catalog.vectors(catalog.ids) @ catalog.vectors([result])[0]))[1])]
    far, farther = (catalog.ids[int(i)] for i in np.argsort(catalog.vectors(catalog.ids) @ catalog.vectors([result])[0])[:2])

    def view(*recent):
        return UserView("u", None, set(), list(recent), history_length=len(recent), window=list(reversed(recent)))

    liked_twin = (twin, "rating", 3, 5.0)  # rated last: removing it lowers Star Wars' score, removing `far` raises it
    driven = view(liked_twin, (far, "view", 2, 1.0))
    assert cited(catalog, [result], driven) == [liked_twin]
    assert reasons_for(catalog, [result], driven) == [f"Because of “{catalog.item(twin).title}”, which you rated 5★"]
    disliked = view((twin, "rating", 3, 2.0), (far, "view", 2, 1.0), (farther, "view", 1, 1.0))
    assert catalog.item(twin).title not in reasons_for(catalog, [result], disliked)[0]  # a 2★ is never given as a reason
    far_only = view((far, "view", 3, 1.0), (farther, "view", 4, 1.0), (twin, "rating", 2, 1.0))  # the twin disliked
    assert cited(catalog, [result], far_only)[0] in {None, far_only.recent[0], far_only.recent[1]}
    catalog.config = dataclasses.replace(served.config, serving=dataclasses.replace(served.config.serving, reason_min_drop=1e6))
    assert cited(catalog, [result], far_only) == cited(catalog, [result], driven) == [None]  # none lowers it enough
    assert reasons_for(catalog, [result], far_only) == ["Fits your history as a whole"]
    assert cited(catalog, [result], view((far, "view", 3, 1.0))) == [(far, "view", 3, 1.0)]  # the whole history


def test_a_reason_cites_the_history_event_whose_removal_lowers_the_score_most(served, fill, tmp_path):
    """Each user's top 10, and for each result the event its reason cites: of the liked recent
    events, the one whose leave-one-out re-embedding (through the sessions' own window encoding,
    one window at a time) lowers the result's score most, or none when no removal lowers it. On
    these users that is often not the history item closest to the result, so a closeness rule
    cannot pass; and often a disliked event's removal would lower the score more, which is never
    cited."""
    from collections import deque

    import numpy as np

    from dynrec.ranking.ranker import cited, liked, reasons_for
    from dynrec.users.sessions import UserRecord

    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.sqlite")))
    serving = dataclasses.replace(served.config.serving, reason_candidates=served.config.serving.reason_history, reason_min_drop=0.0)
    catalog.config = dataclasses.replace(served.config, serving=serving)
    sessions = UserSessions(catalog.config, catalog)
    checked = not_closest = disliked_dropping_more = 0
    users = [u for u in map(str, range(1, 100)) if len(sessions.view(u).window) == serving.reason_window][:16]
    assert len(users) == 16
    for user_id in users:
        view = sessions.view(user_id)
        assert view.window[::-1][: len(view.recent)] == view.recent
        ids = [r.item_id for r in recommend(catalog, view, 10, Filters(), True, 200, 0.0, 0)]
        recent = view.window[-serving.reason_history :]
        windows = [view.window] + [[e for e in view.window if e != r] for r in recent]
        _, *inputs = sessions._batch([UserRecord(user_id, deque(w)) for w in windows], catalog)
        embeddings = np.stack([catalog.runtime.embed_users(*(x[row : row + 1] for x in inputs))[0] for row in range(len(windows))])
        drops = (embeddings[0] - embeddings[1:]) @ catalog.vectors(ids).T  # (recent events, results)
        candidates = [n for n, e in enumerate(recent) if liked(catalog, e)]
        closest = (catalog.vectors(ids) @ catalog.vectors([recent[n][0] for n in candidates]).T).argmax(axis=1)
        for item, entry, reason, column, near in zip(ids, cited(catalog, ids, view), reasons_for(catalog, ids, view), drops.T, closest):
            best = max(column[candidates].max(), 0.0)
            disliked_dropping_more += column.max() > best
            if best <= 0:
                assert entry is None and reason == "Fits your history as a whole"
                continue
            assert entry is not None and liked(catalog, entry), (user_id, item)
            assert column[recent.index(entry)] >= best - 1e-5, (user_id, item)
            assert reason.startswith(f"Because of “{catalog.item(entry[0]).title}”")
            checked += 1
            not_closest += entry != recent[candidates[near]]
    assert checked >= 20 and not_closest >= 10 and disliked_dropping_more >= 10


def test_a_new_users_list_draws_on_their_segment_and_says_so(served, fill, tmp_path):
    """A user without events is placed in a segment by their attributes; the segment's popular
    items are drawn into their prior, and the items there for the segment give it as the reason."""
    from dynrec.config import SegmentConfig
    from dynrec.ranking.ranker import SegmentDraws
    from dynrec.segments import ItemInfo, fit_segments

    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.sqlite")))
    sessions = UserSessions(served.config, catalog)
    items = {m.item_id: ItemInfo(m.title, m.categories, m.text) for m in catalog.meta}
    segmentation = fit_segments(sessions.export(), items, SegmentConfig(k=4))
    newcomer = sessions.view("nobody", {"gender": "F", "age": "25"})
    draw = SegmentDraws(weight=1.0).draw(catalog, segmentation, newcomer)
    segment = segmentation.assign(None, newcomer.attributes)
    assert draw is not None and draw.label == segmentation.profile(segment).label
    plain = recommend(catalog, newcomer, 10, Filters(), True, 200, 0.0, 0)
    drawn = recommend(catalog, newcomer, 10, Filters(), True, 200, 0.0, 0, segment=draw)
    assert [r.item_id for r in drawn] != [r.item_id for r in plain]
    for_segment = [r for r in drawn if r.reason == f"Popular with {draw.label}"]
    assert for_segment and all(r.reason.startswith("Popular with new users who are women") for r in plain)
    popular = segmentation.basis(segment)[1]
    assert all(popular.get(r.item_id, 0) > 0 for r in for_segment)  # named for the segment: its members chose it
    assert SegmentDraws(weight=0.0).draw(catalog, segmentation, newcomer) is None
    sessions.apply([Event("regular", catalog.ids[40 + n], "rating", 1_000_000 + n, 5.0)
                    for n in range(served.config.cold_start.blend_max_events + 1)])
    assert SegmentDraws(weight=1.0).draw(catalog, segmentation, sessions.view("regular")) is None  # their own state suffices


def test_users_with_long_histories_get_lists_of_their_own(served, fill, tmp_path):
    """ML-100k users with their whole histories: no two share a top 5, and none is the popular list."""
    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.sqlite")))
    sessions = UserSessions(served.config, catalog)
    tops = {user: tuple(r.item_id for r in recommend(catalog, sessions.view(user), 5, Filters(), True, 200, 0.0, 0))
            for user in ("1", "13", "92", "200")}
    assert len(set(tops.values())) == len(tops)
    assert tuple(catalog.popular(set(), 5, None)) not in set(tops.values())


def test_popular_items_come_as_many_as_asked_for_none_included(served):
    """A new user's list takes what the prior does not fill from the popular items, often none."""
    catalog = served.catalog()
    assert len(catalog.popular(set(), 3)) == 3 and catalog.popular(set(), 0) == []
