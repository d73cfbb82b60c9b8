"""A real Serve app on a local Ray cluster, serving ML-100k with a bootstrap model, over HTTP."""

import pytest

from dynrec.client import Client
from tests.conftest import serve_app

API_KEY = "test-key-0123456789"


@pytest.fixture(scope="package")
def service(serving_config_path):
    """Starts the app exactly as serve_config.yaml builds it, with the small test config."""
    config_path = serving_config_path
    # writes need this key (reads stay open): every test client sends it, `anonymous` does not. It
    # comes from a secret file, as on Kubernetes: Ray logs a runtime_env's variables, so keys must
    # never travel in one
    secret = config_path.parent / "api-keys"
    secret.write_text(f"# one key per line\nother-key\n{API_KEY}\n")
    config = config_path.parent / "dynrec-with-keys.yaml"
    config.write_text(config_path.read_text() + f"security: {{api_keys_file: {secret}}}\n")
    # two user shards and two Ranker replicas, so routing and replica sync are exercised
    with serve_app(config, {"user_shards": 2, "ranker_replicas": 2}) as base:
        # tests read status codes and error bodies through its raw get/post/put/delete
        with Client(base, API_KEY, timeout_s=60) as client:
            yield client


@pytest.fixture
def anonymous(service):
    """The same service, without an API key."""
    with Client(service.base, timeout_s=60) as client:
        yield client
