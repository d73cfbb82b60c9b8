"""The Ray Data catalogue-encoding job on a real local Ray cluster, with cuts of ML-1M and ML-100k."""

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dynrec.config import DynrecConfig, ModelConfig
from dynrec.data import load_source
from dynrec.encoders.content import encode_catalogue
from dynrec.items.encoding import fused
from dynrec.models.model import DynrecModel, load_model, save_model
from dynrec.models.runtime import ModelRuntime
from training.encode_catalog import behaviour_snapshot, encode_catalog, longest_text_first, pool_arguments, stage_resources


def test_pools_take_fractional_cpus_on_small_machines_and_gpus_when_present():
    small = stage_resources({"CPU": 2.0})
    assert set(small) == {"text", "image"}  # fusion runs in the image actor
    assert sum(r.num_cpus * r.concurrency for r in small.values()) < 2.0  # room left for the read tasks
    assert all(r.num_gpus == 0 for r in small.values())
    assert small["text"].concurrency == 2 and small["text"].threads == 1  # no thread waits on a descheduled sibling
    assert small["image"].threads == 1  # a second poster thread cost more CPU than it saved
    gpu = stage_resources({"CPU": 16.0, "GPU": 2.0})
    assert gpu["text"].num_gpus > 0 and gpu["image"].num_gpus > 0 and gpu["text"].concurrency == 2
    big = stage_resources({"CPU": 32.0})
    assert big["text"].concurrency > big["image"].concurrency >= 1


def test_a_pool_starts_no_more_actors_than_there_are_blocks_to_give_them():
    text = stage_resources({"CPU": 16.0})["text"]
    assert text.concurrency == 4
    assert pool_arguments(text, blocks=1)["compute"].max_size == 1  # ten changed items: one actor pays the start-up
    assert pool_arguments(text, blocks=8)["compute"].max_size == 4


def test_blocks_hold_every_item_once_longest_texts_first(ml1m):
    items = ml1m.items.slice(0, 300)
    blocks = longest_text_first(items, 64)
    assert [b.num_rows for b in blocks] == [64, 64, 64, 64, 44]
    ids = [i for block in blocks for i in block["item_id"].to_pylist()]
    assert sorted(ids) == sorted(items["item_id"].to_pylist())
    lengths = [len(r["title"] or "") + len(r["text"] or "") for block in blocks for r in block.to_pylist()]
    assert lengths == sorted(lengths, reverse=True)
    assert lengths[0] > 10 * lengths[-1]  # the cut mixes abstracts with bare titles, so the order matters


@pytest.fixture
def job(ml1m, tmp_path):
    config = DynrecConfig.from_dict({"home": str(tmp_path / "home"), "model": {"dim": 16}})
    items = ml1m.items.slice(0, 10)
    items_path = tmp_path / "items.parquet"
    pq.write_table(items, items_path)
    torch.manual_seed(0)
    model = DynrecModel(ModelConfig(dim=16), ml1m.items.num_rows, 384, 1280, 8)
    save_model(tmp_path / "model.pt", model, ml1m.items["item_id"].to_pylist())
    return config, items, items_path, tmp_path / "model.pt", tmp_path / "out.parquet"


def vectors(table: pa.Table, column: str = "embedding") -> np.ndarray:
    return np.stack(table[column].to_numpy(zero_copy_only=False))


def test_encodes_every_item_then_only_the_changed_ones(ray_local, job):
    config, items, items_path, model_path, output = job
    first = encode_catalog(config, items_path, model_path, output)
    assert (first["items"], first["encoded"], first["reused"]) == (10, 10, 0)
    table = pq.read_table(output)
    assert table["item_id"].to_pylist() == items["item_id"].to_pylist()
    assert set(table["model_version"].to_pylist()) == {first["model_version"]}
    np.testing.assert_allclose(np.linalg.norm(vectors(table), axis=1), 1.0, atol=1e-5)
    assert table["image_mask"].to_pylist() == [image is not None for image in items["image"].to_pylist()]
    # the image-and-fusion actor runs the exported graph; the checkpoint in torch fuses the same content alike
    model, item_ids, _ = load_model(model_path)
    content = {name: table[name].to_numpy(zero_copy_only=False) for name in ("item_id", "text_mask", "image_mask")}
    content.update({name: vectors(table, name) for name in ("text_embedding", "image_embedding")})
    in_torch = fused(content, ModelRuntime(model, replace(config.runtime, backend="torch")),
                     {item_id: i for i, item_id in enumerate(item_ids)}, *behaviour_snapshot(config))
    np.testing.assert_allclose(vectors(table), in_torch["embedding"], atol=1e-5)

    # edit one item's text, drop another's image, remove a third from the catalogue
    texts, images = items["text"].to_pylist(), items["image"].to_pylist()
    texts[2] = "A new description: a heist on a space station."
    with_image = next(i for i, image in enumerate(images) if image is not None and i != 2)
    images[with_image] = None
    edited = items.set_column(items.schema.get_field_index("text"), "text", pa.array(texts, items.schema.field("text").type))
    edited = edited.set_column(edited.schema.get_field_index("image"), "image", pa.array(images, items.schema.field("image").type))
    edited = edited.filter(pa.array([i != 7 for i in range(10)]))
    pq.write_table(edited, items_path)

    second = encode_catalog(config, items_path, model_path, output)
    assert (second["items"], second["encoded"], second["reused"]) == (9, 2, 7)
    after = pq.read_table(output)
    assert after["item_id"].to_pylist() == edited["item_id"].to_pylist()
    before = dict(zip(table["item_id"].to_pylist(), vectors(table)))
    changed = {items["item_id"][2].as_py(), items["item_id"][with_image].as_py()}
    for item_id, vector in zip(after["item_id"].to_pylist(), vectors(after)):
        if item_id in changed:
            assert not np.allclose(vector, before[item_id], atol=1e-4)
        else:
            np.testing.assert_array_equal(vector, before[item_id])  # reused rows are untouched
    masks = dict(zip(after["item_id"].to_pylist(), after["image_mask"].to_pylist()))
    assert masks[items["item_id"][with_image].as_py()] is False

    third = encode_catalog(config, items_path, model_path, output)  # nothing changed since
    assert (third["items"], third["encoded"], third["reused"]) == (9, 0, 9)
    assert pq.read_table(output).equals(after)


BLANK = 5  # the ML-100k cut's item with no title and no genres either


@pytest.fixture
def bare_source(ml100k, tmp_path):
    """ML-100k's first 24 items as a team's own files: titles and genres only (no image or text
    column), one item with nothing at all, their events, and no users file (no user attributes)."""
    folder = tmp_path / "shop"
    folder.mkdir()
    items = ml100k.items.slice(0, 24).select(["item_id", "title", "categories"]).to_pylist()
    items[BLANK].update(title=None, categories=None)
    pq.write_table(pa.Table.from_pylist(items, ml100k.items.select(["item_id", "title", "categories"]).schema), folder / "items.parquet")
    events = ml100k.events.filter(pa.compute.is_in(ml100k.events["item_id"], value_set=pa.array([r["item_id"] for r in items])))
    pq.write_table(events.select(["user_id", "item_id", "event_type", "timestamp", "value"]), folder / "events.parquet")
    config = DynrecConfig.from_dict({"home": str(tmp_path / "home"), "model": {"dim": 16}, "source": {"uri": str(folder)}})
    ids = [r["item_id"] for r in items]
    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", DynrecModel(ModelConfig(dim=16), len(ids), 384, 1280, 8), ids)
    return config, ids, tmp_path / "model.pt", tmp_path / "out.parquet"


def test_encodes_a_catalogue_without_images_text_or_user_attributes(ray_local, bare_source, tmp_path):
    config, ids, model_path, output = bare_source
    summary = encode_catalog(config, model_path=model_path, output=output)
    assert (summary["items"], summary["encoded"]) == (len(ids), len(ids))
    table = pq.read_table(output)
    assert table["item_id"].to_pylist() == ids
    assert table["image_mask"].to_pylist() == [False] * len(ids)
    assert table["text_mask"].to_pylist() == [i != BLANK for i in range(len(ids))]
    assert np.isfinite(vectors(table)).all()
    np.testing.assert_allclose(np.linalg.norm(vectors(table), axis=1), 1.0, atol=1e-5)

    # the in-process path masks the same items and sees the same text
    content = encode_catalogue(load_source(config).items, tmp_path / "cache", config=config.encoders,
                               runtime=config.runtime, progress=False)
    np.testing.assert_array_equal(table["text_mask"].to_numpy(zero_copy_only=False), content.text_mask)
    np.testing.assert_array_equal(table["image_mask"].to_numpy(zero_copy_only=False), content.image_mask)
    # the same text to within the default precision's batching noise (bf16 text: ~1e-3 per
    # element between batches of other lengths); another item's text lands far lower
    cosines = (vectors(table, "text_embedding") * content.text).sum(axis=1)[content.text_mask]
    assert cosines.min() > 0.9995
    assert not vectors(table, "image_embedding").any() and not content.image.any()
