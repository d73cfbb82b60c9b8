"""A real Serve app on a local Ray cluster, serving ML-100k with a bootstrap model, over HTTP."""

import os

import pytest

from deployments.common import use_serve_environment
from deployments.quickstart import wait_until_ok
from dynrec.client import Client
from tests.conftest import free_port


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
    env = {"DYNREC_CONFIG": str(config), "RAY_AUTH_MODE": "disabled"}
    os.environ.update(env)
    use_serve_environment(local=True)  # the mode the quickstart, the bench and Kubernetes run in
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    port = free_port()
    try:
        from deployments.app import build_app

        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # two user shards and two Ranker replicas, so routing and replica sync are exercised
        serve.run(build_app({"user_shards": 2, "ranker_replicas": 2}), name="dynrec", route_prefix="/")
        # tests read status codes and error bodies through its raw get/post/put/delete
        client = Client(f"http://127.0.0.1:{port}", API_KEY, timeout_s=60)
        wait_until_ok(lambda: client.get("/healthz"), timeout_s=60)
        yield client
        client.close()
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop("DYNREC_CONFIG", None)


@pytest.fixture
def anonymous(service):
    """The same service, without an API key."""
    with Client(service.base, timeout_s=60) as client:
        yield client
