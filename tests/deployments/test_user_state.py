"""The UserState deployment's start, in-process (its class, without Serve): what a shard has
written before it takes its first request."""

import shutil
import sqlite3

from dynrec.config import DynrecConfig
from dynrec.state import open_store


def test_a_shard_booted_from_the_events_has_snapshotted_every_user_before_it_serves(serving_config_path, tmp_path, monkeypatch):
    """The first snapshot of a shard with none holds every user (0.5 s of CPU on ML-1M): written at
    start, not 30 s later by the periodic thread, when it had stalled lookups under load."""
    served = DynrecConfig.load(serving_config_path)
    home = tmp_path / "home"
    shutil.copytree(served.paths.home, home, ignore=shutil.ignore_patterns("state", "cache", "*.lock"))
    config_path = tmp_path / "dynrec.yaml"
    config_path.write_text(serving_config_path.read_text().replace(str(served.paths.home), str(home)))
    config = DynrecConfig.load(config_path)
    database = config.paths.state(config.source.label)
    database.parent.mkdir(parents=True)
    with sqlite3.connect(served.paths.state(config.source.label)) as source, sqlite3.connect(database) as copy:
        source.backup(copy)  # consistent while the Serve tests write to the original
        copy.execute("DELETE FROM snapshot_entries WHERE name LIKE 'users-%'")
        copy.execute("DELETE FROM snapshots WHERE name LIKE 'users-%'")
    store = open_store(config)
    assert store.load_snapshot_entries("users-0-of-1") is None
    monkeypatch.setenv("DYNREC_CONFIG", str(config_path))
    from deployments.user_state import UserState

    shard = UserState.func_or_class()
    try:
        snapshot = store.load_snapshot_entries("users-0-of-1")
        assert shard.sessions.replayed == 0 and len(shard.sessions.users) > 900  # built from ML-100k's events
        assert snapshot is not None and set(snapshot[2]) == set(shard.sessions.users)
    finally:
        shard.watcher.stop()
        shard.catalog.stop_refreshing()
