"""UserState deployment: one shard of users' histories and embeddings.

Each shard is its own deployment with one replica, and the ingress sends every user to the same
shard (a stable hash of the id), so one user's events are applied in order, by one process.
Accepted events are written to the item store's behaviour log before they are acknowledged.
"""

from __future__ import annotations

import numpy as np
from ray import serve
from ray.util import metrics

from deployments.common import item_store, load_served
from dynrec.segments import UserTable
from dynrec.serving.store import StoredEvent
from dynrec.serving.users import Event, UserSessions, UserView


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class UserState:
    def __init__(self):
        served = load_served()
        self.config = served.config
        self.store = item_store(served.config)
        self.catalog = served.catalog(self.store)
        self.catalog.start_refreshing()
        self.sessions = UserSessions(served.config, served.model, self.catalog)
        self.accepted = metrics.Counter("dynrec_events", description="user events accepted (durably written)")

    def apply(self, events: list[dict]) -> list[dict]:
        """Validate and apply events; returns one rejection ({index, error}) per refused event."""
        self.catalog.sync(force=True)
        accepted, rejected = [], []
        types = self.config.model.event_types
        for event in events:
            if event["item_id"] not in self.catalog:
                rejected.append({"index": event["index"], "error": f"unknown item_id '{event['item_id']}'"})
            elif event["event_type"] not in types:
                rejected.append({"index": event["index"], "error": f"unknown event_type '{event['event_type']}'; one of {list(types)}"})
            else:
                accepted.append(Event(event["user_id"], event["item_id"], event["event_type"], int(event["timestamp"]),
                                      float(event["value"]), event.get("recommendation_id")))
        if accepted:
            self.store.add_events([StoredEvent(e.item_id, e.timestamp, e.value, e.event_type, e.user_id, e.recommendation_id)
                                   for e in accepted])
            self.sessions.apply(accepted)
            self.accepted.inc(len(accepted))
        return rejected

    def view(self, user_id: str, attributes: dict[str, str] | None = None) -> UserView:
        self.catalog.sync()
        return self.sessions.view(user_id, attributes)

    def describe(self, user_id: str) -> tuple[dict | None, np.ndarray | None]:
        """The user's readable summary, and the embedding that places them in a segment."""
        view = self.sessions.view(user_id)
        return self.sessions.describe(user_id), view.embedding

    def export(self) -> UserTable:
        return self.sessions.export()
