"""Durable state: one store protocol (item log, behaviour events, snapshots), SQLite or Redis."""

from dynrec.state.base import IssuedRecommendation, ItemChange, StateStore, StoredEvent, open_store, unpickled

__all__ = ["IssuedRecommendation", "ItemChange", "StateStore", "StoredEvent", "open_store", "unpickled"]
