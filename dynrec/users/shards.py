"""What passes between the Ingress and the user shards: which shard owns a user (a stable hash,
so every process routes a user alike), the events sent to it and how they are checked, and the
view of a user a shard hands to ranking, and the shard's other answers. Kept free of the model stack, so the Ingress can route
and unpickle views without importing torch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


def shard_of(user_id: str, shards: int) -> int:
    """The shard for `user_id` among `shards`: stable across processes and restarts (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big") % shards


@dataclass
class Event:
    user_id: str
    item_id: str
    event_type: str
    timestamp: int
    value: float = 1.0
    recommendation_id: str | None = None
    position: int | None = None  # the item's place in that recommendation (set by dynrec.ranking.attribution)


@dataclass
class Applied:
    """A shard's answer to a batch of events: the refused ones, and those attributed to a recommendation."""

    rejected: list[Rejected]
    attributed: list[int]  # request indexes


@dataclass
class Rejected:
    """An event (by its index in the request) a shard refused, and why."""

    index: int
    error: str


def checked_events(events: list[tuple[int, Event]], known_item, event_types: tuple[str, ...]) -> tuple[list[Event], list[Rejected]]:
    """The events a shard may apply, and one rejection for each it may not: an item the catalogue
    does not hold, or an event type outside the model's vocabulary."""
    accepted, rejected = [], []
    for index, event in events:
        if not known_item(event.item_id):
            rejected.append(Rejected(index, f"unknown item_id '{event.item_id}'"))
        elif event.event_type not in event_types:
            rejected.append(Rejected(index, f"unknown event_type '{event.event_type}'; one of {list(event_types)}"))
        else:
            accepted.append(event)
    return accepted, rejected


@dataclass
class ReasonBasis:
    """What a reason weighs (dynrec.ranking.ranker.cited): the user embedded from their reason
    window, and again without each liked recent event of it. The user's shard makes it whenever the
    window changes, so a recommendation request does not pay for the re-embedding."""

    model_version: str  # the model that embedded the rows
    entries: list[tuple[str, str, int, float]]  # the events left out, oldest first, one per row of `without`
    embedding: np.ndarray  # (dim,): the whole window's
    without: np.ndarray  # (len(entries), dim)


@dataclass
class UserView:
    """What ranking needs to know about a user."""

    user_id: str
    embedding: np.ndarray | None
    seen: set[str]
    recent: list[tuple[str, str, int, float]]  # newest first, the last `serving.reason_history` events: what reasons cite
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. gender, age, occupation: the cold-start prior
    history_length: int = 0  # events in the user's window (up to the model's max_length): how much the prior still counts
    model_version: str | None = None  # the model that made `embedding`
    # while a shard overlaps two models after a switch: the user's embeddings under the earlier one, by
    # model version, for Ranker replicas that still serve it
    earlier: dict[str, np.ndarray] = field(default_factory=dict)
    # the store sequence number of the newest event the user's state reflects: it changes when an event lands
    state_version: int | None = None
    # with `interests.retrieval`: the long-term interests' unit directions (interests, dim), under
    # `model_version` like the embedding, and each one's share of the history
    interests: np.ndarray | None = None
    interest_shares: np.ndarray | None = None
    # oldest first, the newest `serving.reason_window` events: what a reason's leave-one-out re-embeds
    window: list[tuple[str, str, int, float]] = field(default_factory=list)
    # the shard's re-embeddings of `window` for reasons, under `model_version`; None while not made yet
    reasons: ReasonBasis | None = None


@dataclass
class HistoryEntry:
    item_id: str
    title: str
    event_type: str
    timestamp: int
    value: float


@dataclass
class InterestSummary:
    """One of a user's long-term interests, readable (dynrec.users.interests)."""

    label: str
    top_categories: list[str]
    share: float  # of the user's decayed history; a user's shares sum to 1


@dataclass
class UserSummary:
    """A user as `GET /v1/users/{id}` describes them (the Ingress adds the segment)."""

    user_id: str
    known: bool
    attributes: dict[str, str]
    history_length: int
    events_since_start: int
    recent: list[HistoryEntry]  # newest first, up to 10
    embedding_norm: float | None
    interests: list[InterestSummary] = field(default_factory=list)  # the largest first
    state_version: int | None = None  # as UserView's


@dataclass
class Erasure:
    known: bool  # the shard held the user's state
    events_erased: int
