"""A real Serve app on a local Ray cluster, serving ML-100k with a bootstrap model, over HTTP."""

import os
import socket
import time

import pytest
import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    def __init__(self, base: str):
        self.base = base
        self.session = requests.Session()

    def __getattr__(self, method: str):
        call = getattr(self.session, method)
        return lambda path, **kwargs: call(self.base + path, timeout=60, **kwargs)


@pytest.fixture(scope="package")
def service(serving_config_path):
    """Starts the app exactly as serve_config.yaml builds it, with the small test config."""
    config_path = serving_config_path
    env = {"DYNREC_CONFIG": str(config_path), "RAY_AUTH_MODE": "disabled"}
    os.environ.update(env)
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    port = free_port()
    try:
        from deployments.app import build_app

        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # two user shards and two Ranker replicas, so routing and replica sync are exercised
        serve.run(build_app({"user_shards": 2, "ranker_replicas": 2}), name="dynrec", route_prefix="/")
        client = Client(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        yield client
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop("DYNREC_CONFIG", None)
