"""UserState deployment: one shard of users' histories and embeddings.

Each shard is its own deployment with one replica, and the ingress sends every user to the same
shard (a stable hash of the id), so one user's events are applied in order, by one process.
Accepted events are written to the state store before they are acknowledged; the shard snapshots
its users every `state.snapshot_every_s`, and a (re)started replica boots from its snapshot (or,
without one, from the store's events) plus the events logged after it. When `dynrec train`
publishes a model, the shard re-embeds its users with it in the background and switches whole
(UserSessions.adopt), keeping the previous model's embeddings current for `serving.model_overlap_s`.
A user's view also carries what their reasons weigh (a ReasonBasis), made here as their events
arrive and for everyone in the background after start-up and after a switch.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from ray import serve
from ray.util import metrics

from deployments.common import (
    REPLICA_HEALTH_CHECK_PERIOD_S,
    load_published,
    load_served,
    state_store,
)
from dynrec.artifacts.versions import ModelWatcher, PublishedModel
from dynrec.ranking.attribution import attribute
from dynrec.segments import UserTable
from dynrec.users.shards import (
    Applied,
    Erasure,
    Event,
    UserSummary,
    UserView,
    checked_events,
    shard_of,
)


@serve.deployment(health_check_period_s=REPLICA_HEALTH_CHECK_PERIOD_S, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class UserState:
    def __init__(self, shard: int = 0, shards: int = 1):
        from dynrec.users.sessions import (
            UserSessions,  # the dataset stack: here, not in the `serve run` driver
        )

        served = load_served()
        self.config = served.config
        self.store = state_store(served.config)
        catalog = served.catalog(self.store)
        catalog.start_refreshing()
        self.snapshot_name = f"users-{shard}-of-{shards}"
        self.sessions = UserSessions(served.config, catalog, self.snapshot_name,
                                     lambda user_id: shard_of(user_id, shards) == shard)
        self.accepted = metrics.Counter("dynrec_events", description="user events accepted (durably written)")
        if self.config.state.snapshot_every_s > 0:
            # before serving: a first start's snapshot holds every user (0.5 s of CPU on ML-1M), and
            # under load it lined up with a quarter-second stall of lookups; after a restart, the replayed users
            self.sessions.save_snapshot(self.store, self.snapshot_name)
            threading.Thread(target=self._snapshot_periodically, name="user-snapshots", daemon=True).start()
        # every user's reason basis, in the background: until a user has one, the Ranker makes it per request
        threading.Thread(target=self.sessions.explain_all, name="reason-bases", daemon=True).start()
        self.watcher = ModelWatcher(self.store, catalog.model_version, self.config.serving.model_poll_s, self._adopt,
                                    served.artifacts.manifest.text_model)

    @property
    def catalog(self):
        return self.sessions.catalog

    def _adopt(self, published: PublishedModel) -> None:
        """Switch the shard to the published model (on the watcher's thread), snapshot its users
        under it, and stop the previous catalogue once the overlap has run out."""
        catalog = load_published(published).catalog(self.store)
        catalog.start_refreshing()
        self.sessions.adopt(catalog, self.config.serving.model_overlap_s)
        self.sessions.save_snapshot(self.store, self.snapshot_name)
        threading.Timer(self.config.serving.model_overlap_s + 1, self._end_overlap).start()
        self.sessions.explain_all()  # the users' reason bases under the new model

    def _end_overlap(self) -> None:
        previous = self.sessions.end_overlap()
        if previous is not None:
            previous.stop_refreshing()

    def _snapshot_periodically(self) -> None:
        while True:
            time.sleep(self.config.state.snapshot_every_s)
            self.sessions.save_snapshot(self.store, self.snapshot_name)

    def lag(self) -> dict[str, int]:
        """How far this shard's replica is behind the state store: the item-log and event-log
        positions its catalogue has applied (the items, and their behaviour statistics, that its
        users are embedded against) and how many entries the store holds past each."""
        applied = self.catalog.positions
        latest = self.store.latest()
        return {"item_log_seq": applied[0], "event_log_seq": applied[1],
                "item_lag": max(0, latest[0] - applied[0]), "event_lag": max(0, latest[1] - applied[1])}

    def apply(self, events: list[tuple[int, Event]]) -> Applied:
        """Check, attribute and apply (request index, event) pairs."""
        self.catalog.sync(force=True)
        events, attributed = attribute(events, self.store.recommendation)
        accepted, rejected = checked_events(events, self.catalog.__contains__, self.config.model.event_types)
        if accepted:
            self.sessions.record(self.store, accepted)
            self.accepted.inc(len(accepted))
        refused = {r.index for r in rejected}
        return Applied(rejected, [i for i in attributed if i not in refused])

    async def view(self, user_id: str, attributes: dict[str, str] | None = None) -> UserView:
        """A coroutine, so it runs on the replica's event loop: the lookup is a few copies, cheaper
        than the hand-off to a worker thread that Serve gives a plain method (`apply` keeps that,
        since it waits on the durable write)."""
        self.catalog.sync()
        return self.sessions.view(user_id, attributes)

    def describe(self, user_id: str) -> tuple[UserSummary | None, np.ndarray | None]:
        """The user's readable summary, and the embedding that places them in a segment."""
        view = self.sessions.view(user_id)
        return self.sessions.describe(user_id), view.embedding

    def export(self) -> UserTable:
        return self.sessions.export()

    def erase(self, user_id: str) -> Erasure:
        return self.sessions.erase(self.store, user_id, self.snapshot_name)

    def status(self) -> dict:
        return {"users": len(self.sessions.users), "replayed_on_start": self.sessions.replayed,
                "model_version": self.catalog.model_version}
