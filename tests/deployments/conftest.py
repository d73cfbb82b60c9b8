"""A real Serve app on a local Ray cluster, serving ML-100k with a bootstrap model, over HTTP: the
whole suite runs once per state store, SQLite and a real Redis server."""

import pytest

from dynrec.client import Client
from tests.conftest import RedisServer, serve_app

API_KEY = "test-key-0123456789"


@pytest.fixture(scope="package", params=["sqlite", "redis"])
def service(request, serving_config_path, data_dir, tmp_path_factory):
    """Starts the app exactly as serve_config.yaml builds it, with the small test config, on the
    parametrised store (both hold the same ML-100k import; the datasets folder stays empty)."""
    config_path = serving_config_path
    # writes need this key (reads stay open): every test client sends it, `anonymous` does not. It
    # comes from a secret file, as on Kubernetes: Ray logs a runtime_env's variables, so keys must
    # never travel in one
    secret = config_path.parent / "api-keys"
    secret.write_text(f"# one key per line\nother-key\n{API_KEY}\n")
    settings = config_path.read_text() + f"security: {{api_keys_file: {secret}}}\n"
    server = None
    if request.param == "redis":
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
        settings += f"state: {{backend: redis, redis_url: '{server.url}'}}\n"
    config = config_path.parent / f"dynrec-{request.param}.yaml"
    config.write_text(settings)
    if server is not None:
        import_into(config, data_dir)
    try:
        # two user shards and two Ranker replicas, so routing and replica sync are exercised
        with serve_app(config, {"user_shards": 2, "ranker_replicas": 2}) as base:
            # tests read status codes and error bodies through its raw get/post/put/delete
            with Client(base, API_KEY, timeout_s=60) as client:
                client.config_path = config  # what tests that publish a model to this store read
                yield client
    finally:
        if server is not None:
            server.stop()


def import_into(config_path, data_dir) -> None:
    """The served dataset into the store `config_path` names, read from the real datasets folder."""
    import dataclasses

    from dynrec.config import DynrecConfig
    from dynrec.state.imports import import_source

    config = DynrecConfig.load(config_path)
    import_source(dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=data_dir)), progress=False)


@pytest.fixture
def anonymous(service):
    """The same service, without an API key."""
    with Client(service.base, timeout_s=60) as client:
        yield client
