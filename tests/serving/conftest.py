"""The served artefacts (ML-100k, bootstrap model), loaded once for every in-process serving test."""

import pytest

from deployments.common import load_served


@pytest.fixture(scope="session")
def served(serving_config_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYNREC_CONFIG", str(serving_config_path))
        yield load_served()
