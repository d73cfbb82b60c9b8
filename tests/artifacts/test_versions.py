"""The published model in the store: what a newer run must beat, and the watcher that hands each
new one to a replica exactly once."""

from dynrec.artifacts.versions import (
    ModelWatcher,
    PublishedModel,
    better_than_served,
    publish_model,
    published_model,
)
from dynrec.state.sqlite import SqliteStore


def test_a_run_is_published_only_when_it_is_at_least_as_good_as_the_served_one(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    assert published_model(store) is None and better_than_served(store, 0.01)
    assert not better_than_served(store, 0.01, unpublished_ndcg=0.02)  # the bootstrap it would replace is better
    publish_model(store, PublishedModel("run-a", "aaaa", 0.05, 1.0))
    assert published_model(store) == PublishedModel("run-a", "aaaa", 0.05, 1.0)
    assert not better_than_served(store, 0.04) and not better_than_served(store, None)
    assert better_than_served(store, 0.05) and better_than_served(store, 0.06)


def test_the_watcher_adopts_each_new_model_once_and_retries_a_failed_adoption(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    adopted, failing = [], [True]

    def adopt(model: PublishedModel) -> None:
        if failing[0]:
            raise FileNotFoundError("graphs not copied yet")
        adopted.append(model.fingerprint)

    watcher = ModelWatcher(store, "aaaa", 0, adopt)  # 0: no thread, checked by hand
    assert not watcher.check()  # nothing published
    publish_model(store, PublishedModel("run-a", "aaaa", None, 1.0))
    assert not watcher.check()  # the model it already serves
    publish_model(store, PublishedModel("run-b", "bbbb", None, 2.0))
    try:
        watcher.check()
        raise AssertionError("the failed adoption was swallowed")
    except FileNotFoundError:
        pass
    assert watcher.serving == "aaaa"  # not switched: the next poll tries again
    failing[0] = False
    assert watcher.check() and not watcher.check()
    assert adopted == ["bbbb"] and watcher.serving == "bbbb"


def test_the_watcher_leaves_a_model_with_another_text_encoder_to_the_next_deployment(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    adopted = []
    watcher = ModelWatcher(store, "aaaa", 0, lambda model: adopted.append(model.fingerprint))
    publish_model(store, PublishedModel("tuned", "bbbb", None, 1.0, "all-MiniLM-L6-v2-tuned-0123456789ab"))
    assert not watcher.check() and adopted == []  # its item vectors would mix two encoders' text vectors
    publish_model(store, PublishedModel("frozen", "cccc", None, 2.0))
    assert watcher.check() and adopted == ["cccc"]
