"""Durable state: one store protocol (item log, behaviour events, snapshots), SQLite or Redis."""

from dynrec.state.base import ItemChange, StateStore, StoredEvent, open_store

__all__ = ["ItemChange", "StateStore", "StoredEvent", "open_store"]
