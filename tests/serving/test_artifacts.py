"""The checkpoint's manifest lets replicas that only fuse or rank run the exported graphs alone."""

import os
import shutil
import subprocess
import sys

import numpy as np

from deployments.common import load_served
from dynrec.models.runtime import MANIFEST_FILE, ModelManifest


def test_a_replica_without_the_model_embeds_as_the_model_does(served, serving_config_path, monkeypatch):
    monkeypatch.setenv("DYNREC_CONFIG", str(serving_config_path))
    light = load_served()
    assert light.model is None and light.item_ids == served.item_ids
    assert light.runtime.fingerprint == served.runtime.fingerprint
    rng = np.random.default_rng(0)
    n = 5
    feeds = (np.array([0, 3, -1, 7, -1]), rng.standard_normal((n, light.runtime.input_dims.get("text", 1))),
             np.array([1, 1, 1, 0, 1], bool), rng.standard_normal((n, light.runtime.input_dims.get("image", 1))),
             np.array([0, 1, 1, 0, 0], bool), rng.standard_normal((n, light.runtime.input_dims.get("behaviour", 1))))
    np.testing.assert_allclose(light.runtime.embed_items(*feeds), served.runtime.embed_items(*feeds), atol=1e-6)


def test_the_light_path_never_imports_torch(served, serving_config_path):
    probe = ("import sys; from deployments.common import load_served; s = load_served(); "
             "s.catalog(); print(s.model is None, 'torch' in sys.modules)")
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
