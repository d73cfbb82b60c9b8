"""The checkpoint's manifest lets replicas that only fuse or rank run the exported graphs alone."""

import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np

from dynrec.models.model import load_model
from dynrec.models.runtime import MANIFEST_FILE, ModelManifest, ModelRuntime


def test_the_exported_graphs_embed_as_the_model_does(served):
    model, item_ids, _ = load_model(served.artifacts.model_path)
    torch_runtime = ModelRuntime(model, dataclasses.replace(served.config.runtime, backend="torch"))
    assert served.model is None and served.item_ids == item_ids
    assert served.runtime.fingerprint == torch_runtime.fingerprint
    rng = np.random.default_rng(0)
    n = 5
    feeds = (np.array([0, 3, -1, 7, -1]), rng.standard_normal((n, served.runtime.input_dims.get("text", 1))),
             np.array([1, 1, 1, 0, 1], bool), rng.standard_normal((n, served.runtime.input_dims.get("image", 1))),
             np.array([0, 1, 1, 0, 0], bool), rng.standard_normal((n, served.runtime.input_dims.get("behaviour", 1))))
    np.testing.assert_allclose(served.runtime.embed_items(*feeds), torch_runtime.embed_items(*feeds), atol=1e-5)
    windows = (rng.standard_normal((2, 6, served.runtime.dim)), np.zeros((2, 6), np.int64), np.ones((2, 6)), np.ones((2, 6)),
               np.array([6, 3]))
    np.testing.assert_allclose(served.runtime.embed_users(*windows), torch_runtime.embed_users(*windows), atol=1e-5)


def test_serving_users_and_items_never_imports_torch(served, serving_config_path):
    probe = ("import sys; from deployments.common import load_served; from dynrec.users.sessions import UserSessions; "
             "s = load_served(); UserSessions(s.config, s.catalog()); print(s.model is None, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "DYNREC_CONFIG": str(serving_config_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["True", "False"]


def test_a_manifest_describes_only_its_own_checkpoint(served, tmp_path):
    checkpoint = tmp_path / "model.pt"
    shutil.copy(served.artifacts.model_path, checkpoint)
    shutil.copy(served.artifacts.model_path.with_name(MANIFEST_FILE), tmp_path / MANIFEST_FILE)
    assert ModelManifest.read(checkpoint) == served.artifacts.manifest
    with open(checkpoint, "ab") as handle:  # another checkpoint under the same name
        handle.write(b"\0")
    assert ModelManifest.read(checkpoint) is None
