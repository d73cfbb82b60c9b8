"""Which model the service serves, kept in the state store so every replica on every node agrees.

`dynrec train` publishes a finished run here (after its files reach `artifacts.uri`); running
replicas poll it (`serving.model_poll_s`), build the new model's catalogue and user embeddings in
the background, and switch when they are ready (deployments/*, `adopt`). A replica that starts
later boots straight into the published run.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Callable

from dynrec.state import StateStore

POINTER = "served-model"  # the store snapshot that names the published run


@dataclass(frozen=True)
class PublishedModel:
    run_name: str
    fingerprint: str  # the model's version, as responses report it
    valid_ndcg: float | None  # best validation NDCG@10 of the run: what a newer run must beat
    published_at: float
    text_model: str = ""  # its tuned text encoder (ModelManifest.text_model), "" for the configured one


def published_model(store: StateStore) -> PublishedModel | None:
    saved = store.load_snapshot(POINTER)
    return PublishedModel(**json.loads(saved[1])) if saved is not None else None


def publish_model(store: StateStore, model: PublishedModel) -> None:
    store.save_snapshot(POINTER, store.latest()[1], json.dumps(asdict(model)).encode())


def better_than_served(store: StateStore, valid_ndcg: float | None, unpublished_ndcg: float | None = None) -> bool:
    """Whether a run with `valid_ndcg` should replace the served model, whose score is the published
    run's, or `unpublished_ndcg` (the bootstrap's, say) while nothing is published: yes when the
    served model has no score, or the new one is at least as good."""
    served = published_model(store)
    score = served.valid_ndcg if served is not None else unpublished_ndcg
    return score is None or (valid_ndcg is not None and valid_ndcg >= score)


class ModelWatcher:
    """Polls the published model in a daemon thread and calls `adopt` with each new one (not the
    version `serving`). `adopt` runs on the watcher's thread, so a slow rebuild never blocks requests;
    a failed adoption is retried at the next poll.

    A model whose text encoder differs from `text_model` (the served model's) is not adopted: the
    item vectors the store holds were made from the served encoder's text vectors, so it is served
    after the next deployment instead (every replica boots into the published model)."""

    def __init__(self, store: StateStore, serving: str, every_s: float, adopt: Callable[[PublishedModel], None],
                 text_model: str = ""):
        self.store, self.serving, self.every_s, self.adopt, self.text_model = store, serving, every_s, adopt, text_model
        self.failures = 0
        self._stop = threading.Event()
        if every_s > 0:
            threading.Thread(target=self._loop, name="model-watcher", daemon=True).start()

    def check(self) -> bool:
        """Adopt the published model if it is new here; returns whether one was adopted."""
        published = published_model(self.store)
        if published is None or published.fingerprint == self.serving:
            return False
        if published.text_model != self.text_model:
            print(f"model watcher: {published.run_name} reads another text encoder ({published.text_model or 'the configured one'}, "
                  f"served: {self.text_model or 'the configured one'}); it is served after the next deployment", flush=True)
            self.serving = published.fingerprint
            return False
        self.adopt(published)
        self.serving = published.fingerprint
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check()
            except Exception as error:  # a half-published run, or a store hiccup: try again next poll
                self.failures += 1
                print(f"model watcher: could not adopt the published model yet ({type(error).__name__}: {error})", flush=True)

    def stop(self) -> None:
        self._stop.set()
