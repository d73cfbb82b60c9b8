"""A filter nothing passes: an empty list, not an error, on the blended path of a user with few
events (schemathesis found it: an unknown include category answered 503 with an IndexError)."""

from dynrec.ranking.ranker import Filters, recommend, retrieve
from dynrec.users.sessions import UserSessions
from dynrec.users.shards import Event


def test_a_filter_nothing_passes_gives_an_empty_list(served):
    catalog = served.catalog()
    sessions = UserSessions(served.config, catalog)
    sessions.apply([Event("one-event", catalog.ids[40], "rating", 1_000_000, 5.0)])
    view = sessions.view("one-event", {"gender": "F"})
    nothing = Filters(include_categories=["no-such-category"])
    ids, scores = retrieve(catalog, view, 10, view.seen, nothing.accepts(catalog))
    assert list(ids) == [] and len(scores) == 0
    assert [r.item_id for r in recommend(catalog, view, 10, nothing, True, 200, 0.0, 0)] == []
