"""Artefacts at a URI: a served run published by one home is fetched into an empty one, and
served from there without training anything."""

import dataclasses
import filecmp

import pyarrow.fs as pafs

from dynrec.artifacts.prepare import ensure_artifacts
from dynrec.artifacts.publish import fetch, publish
from dynrec.config import DynrecConfig


def test_publish_then_fetch_round_trips_a_folder(tmp_path):
    home, other = tmp_path / "home", tmp_path / "other"
    (home / "artifacts" / "run" / "sub").mkdir(parents=True)
    (home / "artifacts" / "run" / "model.pt").write_bytes(b"weights")
    (home / "artifacts" / "run" / "sub" / "metrics.json").write_text("{}")
    bucket = f"file://{tmp_path / 'bucket'}"
    assert publish(home, "artifacts/run", bucket)
    assert not publish(home, "artifacts/missing", bucket) and not publish(home, "artifacts/run", "")
    assert fetch(other, "artifacts/run", bucket)
    assert (other / "artifacts" / "run" / "model.pt").read_bytes() == b"weights"
    assert (other / "artifacts" / "run" / "sub" / "metrics.json").is_file()
    assert not fetch(other, "artifacts/run", bucket)  # present: left alone
    assert not fetch(other, "artifacts/none", bucket)
    listing = pafs.LocalFileSystem().get_file_info(pafs.FileSelector(str(tmp_path / "bucket"), recursive=True))
    assert any(info.path.endswith("model.pt") for info in listing)


def test_a_fresh_home_serves_the_published_run_without_training(serving_config_path, tmp_path):
    config = DynrecConfig.load(serving_config_path)
    served = ensure_artifacts(config)
    bucket = str(tmp_path / "bucket")  # a plain path works as well as a URI
    for relative in (f"artifacts/{served.run_name}", f"embeddings/{served.run_name}"):
        assert publish(config.home, relative, bucket)
    fresh = dataclasses.replace(config, home=tmp_path / "fresh-home", artifacts=dataclasses.replace(config.artifacts, uri=bucket))
    fetched = ensure_artifacts(fresh)
    assert fetched.run_name == served.run_name and fetched.model_path.parent.parent.parent == tmp_path / "fresh-home"
    assert filecmp.cmp(fetched.model_path, served.model_path, shallow=False)
    assert filecmp.cmp(fetched.embeddings_path, served.embeddings_path, shallow=False)
