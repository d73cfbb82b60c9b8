"""Shared fixtures: the real datasets from DYNREC_DATA_DIR (../shared/data by default), loaded once;
a small served model; and a real redis-server (from the Debian package .ci/run installs), started
on loopback with append-only fsync on every write, so durability is tested as production runs it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import redis

from dynrec.config import default_data_dir
from dynrec.data import Dataset, Interactions, leave_one_out, load_ml1m, load_ml100k
from dynrec.data.schemas import (
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    TIMESTAMP_TYPE,
    USERS_SCHEMA,
)


@pytest.fixture(scope="session", autouse=True)
def dynrec_home(tmp_path_factory):
    """Exports, caches and runs go to a throwaway home, never the user's ~/.dynrec."""
    home = tmp_path_factory.mktemp("dynrec-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYNREC_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def data_dir():
    path = default_data_dir()
    if not (path / "ml-100k" / "u.data").is_file():
        pytest.fail(f"dataset folder {path} not found: set DYNREC_DATA_DIR (CI expects ../shared/data)")
    return path


@pytest.fixture(scope="session")
def serving_config_path(tmp_path_factory, data_dir):
    """A small serving config (ML-100k imported into the store, a bootstrap model), its artefacts
    prepared once: shared by the in-process serving tests and the Serve app, which finds them ready.
    Its data folder is empty: everything served comes from the store."""
    from dynrec.artifacts.prepare import ensure_artifacts
    from dynrec.config import DynrecConfig
    from dynrec.state.imports import import_source

    folder = tmp_path_factory.mktemp("serving")
    (folder / "no-datasets").mkdir()
    path = folder / "dynrec.yaml"
    settings = (
        f"home: {folder / 'home'}\n"
        "source: {dataset: ml-100k}\n"
        "serving: {bootstrap_epochs: 4, behaviour_refresh_s: 0.5, model_poll_s: 1}\n"
        "model: {dim: 32, max_length: 50}\n"
        # the model the serving tests' thresholds were set on (segment lists' closeness among them):
        # 4 epochs at the learning rate the default was before it became 0.002
        "train: {learning_rate: 0.001}\n"
    )
    path.write_text(settings + f"data: {{data_dir: {data_dir}}}\n")
    import_source(DynrecConfig.load(path), progress=False)
    path.write_text(settings + f"data: {{data_dir: {folder / 'no-datasets'}}}\n")
    ensure_artifacts(DynrecConfig.load(path))
    return path


@pytest.fixture(scope="session")
def served(serving_config_path):
    """The served artefacts (ML-100k, bootstrap model), loaded once for every in-process serving test."""
    from deployments.common import load_served

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYNREC_CONFIG", str(serving_config_path))
        yield load_served()


@pytest.fixture(scope="session")
def retrained(serving_config_path):
    """A second model for the served store, as `dynrec train` leaves one before publishing it: the
    bootstrap recipe with another seed and 2 epochs, in its own run folder, with its item-item term
    fitted by the training job's own step (at weight 1, so that it shows). Returns the config
    naming that run, and the model's path."""
    import dataclasses

    from dynrec.artifacts.prepare import train_bootstrap
    from dynrec.config import DynrecConfig
    from dynrec.state import open_store
    from dynrec.state.imports import stored_dataset
    from training.train import add_item_item

    config = DynrecConfig.load(serving_config_path)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=1, run_name="ml-100k-retrained"),
                                 serving=dataclasses.replace(config.serving, bootstrap_epochs=2))
    store = open_store(config)
    try:
        dataset = stored_dataset(store, config.source.label)[0]
    finally:
        store.close()
    model_path = config.paths.model(config.run_name)
    train_bootstrap(config, dataset, model_path, progress=False)
    add_item_item(dataclasses.replace(config, item_item=dataclasses.replace(config.item_item, weights=(1.0,))))
    return config, model_path


@pytest.fixture(scope="session")
def ml100k_store_file(ml100k, tmp_path_factory):
    """One SQLite store with ML-100k imported, made once: `fill` copies it into empty SQLite stores."""
    from dynrec.state.imports import import_dataset
    from dynrec.state.sqlite import SqliteStore

    path = tmp_path_factory.mktemp("ml100k-store") / "state.sqlite"
    store = SqliteStore(path)
    import_dataset(ml100k, store, progress=False)
    store.close()
    return path


@pytest.fixture
def fill(ml100k, ml100k_store_file):
    """`fill(store)`: the store with what the served store was first given (ML-100k, imported), as a
    replica finds it; not the served store itself, which the HTTP tests add items to. An empty
    SQLite store gets a page-for-page copy of one import (SQLite's backup API), not an import of its
    own (2-3 s each, in some 30 tests); other stores import."""
    import sqlite3
    from contextlib import closing

    from dynrec.state.imports import import_dataset
    from dynrec.state.sqlite import SqliteStore

    def filled(store):
        if isinstance(store, SqliteStore) and store.latest() == (0, 0) and not store.users():
            with closing(sqlite3.connect(ml100k_store_file)) as source:
                source.backup(store._db)
        else:
            import_dataset(ml100k, store, progress=False)
        return store

    return filled


@pytest.fixture(scope="session")
def ml1m(data_dir):
    return load_ml1m(data_dir)


@pytest.fixture(scope="session")
def ml100k(data_dir):
    return load_ml100k(data_dir)


@pytest.fixture(scope="session")
def ml100k_interactions(ml100k):
    return Interactions.from_dataset(ml100k)


@pytest.fixture(scope="session")
def ml100k_split(ml100k_interactions):
    return leave_one_out(ml100k_interactions)


def make_interactions(sequences: dict[str, list[tuple[int, int]]], n_items: int) -> Interactions:
    """Tiny hand-built interactions: user id -> [(item index, unix time), ...] (already in order)."""
    user_ids = np.array(list(sequences), dtype=object)
    items, times, lengths = [], [], []
    for events in sequences.values():
        items += [i for i, _ in events]
        times += [t for _, t in events]
        lengths.append(len(events))
    return Interactions(
        user_ids,
        np.array([str(i) for i in range(n_items)], dtype=object),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.array(items, dtype=np.int32),
        np.array(times, dtype=np.int64),
        np.ones(len(items), dtype=np.float32),
        np.zeros(len(items), dtype=np.int16),
    )


def tiny_dataset(item_ids: list[str], events: list[tuple[str, str, int]]) -> Dataset:
    """A canonical dataset from item ids and (user id, item id, unix time) events."""
    n_items, n_events = len(item_ids), len(events)
    items = pa.table(
        {f.name: pa.array(item_ids) if f.name == "item_id" else pa.nulls(n_items, f.type) for f in ITEMS_SCHEMA},
        schema=ITEMS_SCHEMA,
    )
    columns = {
        "user_id": pa.array([u for u, _, _ in events]),
        "item_id": pa.array([i for _, i, _ in events]),
        "event_type": pa.array(["view"] * n_events),
        "timestamp": pa.array([t for _, _, t in events], pa.int64()).cast(TIMESTAMP_TYPE),
        "value": pa.nulls(n_events, pa.float32()),
        "recommendation_id": pa.nulls(n_events, pa.string()),
    }
    user_ids = sorted({u for u, _, _ in events})
    users = pa.table(
        {"user_id": pa.array(user_ids), "attributes": pa.nulls(len(user_ids), USERS_SCHEMA.field("attributes").type)},
        schema=USERS_SCHEMA,
    )
    return Dataset("tiny", items, pa.table(columns, schema=EVENTS_SCHEMA), users)

@contextmanager
def serve_app(config_path, app_args: dict | None = None):
    """The Serve app exactly as serve_config.yaml builds it, on a local Ray cluster, with the dynrec
    config at `config_path`; yields its base URL once /healthz answers."""
    import os

    from deployments.common import use_serve_environment
    from dynrec.client import wait_until_ok

    from bench.common import haproxy_side_ports

    import yaml

    (application,) = yaml.safe_load((Path(__file__).parents[1] / "serve_config.yaml").read_text())["applications"]
    # serve_config.yaml's own variables (the replicas' priority), which serve.run from Python does not read
    served_env = application.get("runtime_env", {}).get("env_vars", {})
    env = {"DYNREC_CONFIG": str(config_path), "RAY_AUTH_MODE": "disabled", **haproxy_side_ports()}
    os.environ.update(env)
    env.update(served_env)
    use_serve_environment(local=True)  # the mode the quickstart, the bench and Kubernetes run in
    import ray
    import requests
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    port = free_port()
    try:
        from deployments.app import build_app

        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(app_args), name="dynrec", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        wait_until_ok(lambda: requests.get(base + "/healthz", timeout=10), timeout_s=60)
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop("DYNREC_CONFIG", None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, folder):
        self.folder, self.port, self.process = folder, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: scripts/test.sh installs it (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def crash(self) -> None:
        """SIGKILL: no shutdown save, only what the append-only file already holds survives."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def open_backend(request, tmp_path):
    """A function that opens (or reopens) one store of the parametrised backend, and a `crash`
    that loses everything not durable: for Redis, a SIGKILL and restart of the server."""
    if request.param == "sqlite":
        from dynrec.state.sqlite import SqliteStore

        path = tmp_path / "state.sqlite"
        yield (lambda: SqliteStore(path)), (lambda: None)
    else:
        from dynrec.state.redis import RedisStore

        server = request.getfixturevalue("redis_server")

        def crash():
            server.crash()
            server.start()

        yield (lambda: RedisStore(server.url, namespace="test")), crash
