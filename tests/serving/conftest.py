"""The served artefacts (ML-100k, bootstrap model), loaded once for every in-process serving test,
and stores filled with the same data for tests that write their own."""

import pytest

from deployments.common import load_served
from dynrec.state import open_store
from dynrec.state.imports import import_dataset, stored_dataset


@pytest.fixture(scope="session")
def served(serving_config_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYNREC_CONFIG", str(serving_config_path))
        yield load_served()


@pytest.fixture(scope="session")
def served_dataset(served):
    """What the served store holds (ML-100k as imported), to fill other stores with."""
    store = open_store(served.config)
    try:
        return stored_dataset(store, served.config.source.label)[0]
    finally:
        store.close()


@pytest.fixture
def fill(served_dataset):
    """`fill(store)`: the store with the served data imported, as a replica finds it."""

    def filled(store):
        import_dataset(served_dataset, store, progress=False)
        return store

    return filled
