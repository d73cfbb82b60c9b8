import os

import pytest


@pytest.fixture(scope="package")
def ray_local():
    """A real local Ray cluster for the Ray Train tests, shut down after them (the other Ray tests
    start their own)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()
