"""Item text, the content-hash cache, and catalogue encoding with the real encoders."""

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dynrec.config import EncoderConfig, RuntimeConfig
from dynrec.data.schemas import ITEMS_SCHEMA
from dynrec.encoders.content import (
    EmbeddingCache,
    content_hash,
    encode_catalogue,
    has_text,
    image_bytes,
    image_content_hash,
    item_text,
)
from dynrec.encoders.image import ImageEncoder
from dynrec.encoders.text import TextEncoder

# the exact paths: these tests compare a batch's vectors with single encodes and name the cache
# files; the fast paths' parity with these is tests/onnx/test_fast_paths.py
EXACT = RuntimeConfig(precision="fp32")


def test_item_text_joins_the_present_parts():
    categories = ["Animation", "Children's", "Comedy"]
    assert item_text("Toy Story (1995)", categories, None) == "Toy Story (1995). Animation, Children's, Comedy."
    assert item_text("Heat (1995)", ["Action"], "A heist film.") == "Heat (1995). Action. A heist film."
    assert item_text(None, [], "  Only an abstract ") == "Only an abstract."
    assert item_text("Why?", None, "") == "Why?"
    assert item_text(None, None, None) == ""


NAN = float("nan")
# what an absent value becomes after Arrow -> numpy/pandas: Ray Data hands an all-null column on as NaN
MISSING = [None, NAN, np.float32("nan"), pd.NA, pd.NaT]


def test_missing_values_of_any_shape_mean_no_text():
    for missing in MISSING:
        assert item_text(missing, missing, missing) == ""
        assert not has_text(missing, missing)
        assert item_text("Heat (1995)", missing, missing) == "Heat (1995)."
    # Ray Data hands list columns over as numpy arrays
    assert item_text(NAN, np.array(["Action", None, " "], dtype=object), "A heist film.") == "Action. A heist film."
    assert has_text(NAN, " A heist film. ") and not has_text("  ", None)


def test_missing_values_of_any_shape_mean_no_image(tmp_path):
    empty_structs = [{"path": None, "bytes": None}, {"path": NAN, "bytes": NAN}, {"path": None, "bytes": b""}]
    for missing in MISSING + empty_structs + [b"", str(tmp_path / "gone.jpg")]:
        assert image_bytes(missing) is None and image_content_hash(missing) is None
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(b"jpeg bytes")
    for image in (b"jpeg bytes", {"path": NAN, "bytes": b"jpeg bytes"}, {"path": str(poster), "bytes": NAN}, str(poster)):
        assert image_content_hash(image) == content_hash(b"jpeg bytes")
    with pytest.raises(TypeError, match="unsupported image type int"):
        image_bytes(3)


def test_content_hash_is_sha256_of_utf8():
    assert content_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    assert content_hash("Misérables") == content_hash("Misérables".encode("utf-8"))


class CountingCompute:
    """Deterministic fake vectors (row = hash-derived value) that record which positions were asked for."""

    def __init__(self, hashes, dim):
        self.hashes, self.dim, self.calls = hashes, dim, []

    def __call__(self, positions):
        self.calls.append(list(positions))
        return np.array([[int(self.hashes[p][:6], 16)] * self.dim for p in positions], dtype=np.float32)


def test_cache_computes_only_misses_and_survives_reload(tmp_path):
    hashes = [content_hash(s) for s in "abcd"]
    compute = CountingCompute(hashes, 3)
    first = EmbeddingCache(tmp_path).lookup_or_compute("fake", hashes[:2], compute, 3)
    assert compute.calls == [[0, 1]]

    more = hashes[1:] + hashes[:1]
    compute = CountingCompute(more, 3)
    second = EmbeddingCache(tmp_path).lookup_or_compute("fake", more, compute, 3)
    assert compute.calls == [[1, 2]]
    np.testing.assert_array_equal(second[[3, 0]], first)
    expected = np.array([[int(h[:6], 16)] * 3 for h in more], dtype=np.float32)
    np.testing.assert_array_equal(second, expected)

    compute = CountingCompute(hashes, 3)
    EmbeddingCache(tmp_path).lookup_or_compute("fake", hashes, compute, 3)
    assert compute.calls == []
    assert [p.name for p in tmp_path.iterdir()] == ["fake.parquet"]
    table = pq.read_table(tmp_path / "fake.parquet")
    assert table.column_names == ["content_hash", "embedding"] and table.num_rows == 4
    with pytest.raises(ValueError, match="3-d"):
        EmbeddingCache(tmp_path).lookup_or_compute("fake", hashes, compute, 5)


def test_cache_computes_duplicated_hashes_once(tmp_path):
    hashes = [content_hash(s) for s in ["x", "y", "x", "x", "y", "z"]]
    compute = CountingCompute(hashes, 2)
    vectors = EmbeddingCache(tmp_path).lookup_or_compute("fake", hashes, compute, 2)
    assert compute.calls == [[0, 1, 5]]
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[1], vectors[4])
    assert pq.read_table(tmp_path / "fake.parquet").num_rows == 3


@pytest.fixture(scope="module")
def catalogue(ml1m, tmp_path_factory):
    """16 ML-1M movies mixing text/no text and poster/no poster, plus four hand-made edge cases."""
    items = ml1m.items
    images = items["image"].to_pylist()
    texts = items["text"].to_pylist()
    picks = {}
    for with_text in (True, False):
        for with_image in (True, False):
            rows = [
                i
                for i in range(items.num_rows)
                if (texts[i] is not None) == with_text and (images[i] is not None) == with_image
            ]
            picks.update(dict.fromkeys(rows[:4]))
    movies = items.take(list(picks))
    poster = next(image for image in images if image)
    extra = pa.table(
        {
            "item_id": ["x-broken", "x-missing-file", "x-untitled", "x-broken-copy"],
            "title": ["Broken poster", "Lost poster", None, "Broken poster"],
            "text": [None, None, "   ", None],
            "categories": [["Drama"], [], ["Comedy"], ["Drama"]],
            "image": [
                {"path": None, "bytes": b"not an image"},
                {"path": str(tmp_path_factory.mktemp("nowhere") / "gone.jpg"), "bytes": None},
                poster,
                {"path": None, "bytes": b"not an image"},
            ],
            "attributes": [[], [], [], []],
            "created_at": [None] * 4,
        },
        schema=ITEMS_SCHEMA,
    )
    return pa.concat_tables([movies, extra])


def test_encode_catalogue_masks_and_warm_cache(catalogue, tmp_path, monkeypatch):
    built = {}
    for cls in (TextEncoder, ImageEncoder):
        original = cls.from_config.__func__

        def counting(klass, cfg, runtime=None, original=original):
            built.setdefault(klass.__name__, []).append(original(klass, cfg, runtime))
            return built[klass.__name__][-1]

        monkeypatch.setattr(cls, "from_config", classmethod(counting))

    cold = encode_catalogue(catalogue, tmp_path, config=EncoderConfig(), progress=False, runtime=EXACT)
    assert {name: len(made) for name, made in built.items()} == {"TextEncoder": 1, "ImageEncoder": 1}

    rows = catalogue.to_pylist()
    n = len(rows)
    expected_text = [bool((r["title"] or "").strip() or (r["text"] or "").strip()) for r in rows]
    unusable = ("x-broken", "x-missing-file", "x-broken-copy")
    expected_image = [r["image"] is not None and r["item_id"] not in unusable for r in rows]
    assert cold.text.shape == (n, 384) and cold.image.shape == (n, 1280)
    assert cold.text_mask.tolist() == expected_text
    assert cold.image_mask.tolist() == expected_image
    assert 0 < cold.text_mask.sum() < n and 0 < cold.image_mask.sum() < n
    np.testing.assert_allclose(np.linalg.norm(cold.text[cold.text_mask], axis=1), 1.0, atol=1e-5)
    assert not cold.text[~cold.text_mask].any() and not cold.image[~cold.image_mask].any()
    assert np.isfinite(cold.image).all() and (cold.image[cold.image_mask].sum(axis=1) > 0).all()

    first = rows[0]
    direct = built["TextEncoder"][0].encode([item_text(first["title"], first["categories"], first["text"])])
    np.testing.assert_allclose(cold.text[0], direct[0], atol=1e-5)

    image_cache = pq.read_table(tmp_path / "image-efficientnet-lite0-224.parquet")
    vectors = np.stack(image_cache["embedding"].to_numpy(zero_copy_only=False))
    undecodable = np.isnan(vectors).all(axis=1)
    assert undecodable.sum() == 1  # the two broken items share one hash; the missing file is not stored
    distinct_posters = {r["image"]["path"] for r, ok in zip(rows, expected_image) if ok}  # x-untitled reuses one
    assert image_cache.num_rows == len(distinct_posters) + 1
    assert (tmp_path / "text-all-MiniLM-L6-v2-len128.parquet").is_file()

    def refuse(klass, cfg, runtime=None):
        raise AssertionError(f"{klass.__name__} built although every embedding is cached")

    for cls in (TextEncoder, ImageEncoder):
        monkeypatch.setattr(cls, "from_config", classmethod(refuse))
    warm = encode_catalogue(catalogue, tmp_path, config=EncoderConfig(), progress=False, runtime=EXACT)
    for field in ("text", "text_mask", "image", "image_mask"):
        np.testing.assert_array_equal(getattr(warm, field), getattr(cold, field))


def test_encode_catalogue_without_images_or_text(ml100k, tmp_path, monkeypatch):
    """ML-100k has titles and genres only; here some items lose those too, so they have nothing."""
    rows = ml100k.items.slice(0, 12).to_pylist()
    for i in (2, 7):
        rows[i].update(title=None, categories=None)
    rows[9].update(title=None)  # genres alone are not enough text to stand for an item
    items = pa.Table.from_pylist(rows, ITEMS_SCHEMA)
    assert items["image"].null_count == items["text"].null_count == items.num_rows

    def refuse(klass, cfg, runtime=None):
        raise AssertionError("the image encoder was built for a catalogue with no images")

    monkeypatch.setattr(ImageEncoder, "from_config", classmethod(refuse))
    content = encode_catalogue(items, tmp_path, config=EncoderConfig(), progress=False, runtime=EXACT)
    expected_text = [i not in (2, 7, 9) for i in range(len(rows))]
    assert content.text_mask.tolist() == expected_text
    np.testing.assert_allclose(np.linalg.norm(content.text[content.text_mask], axis=1), 1.0, atol=1e-5)
    assert not content.text[~content.text_mask].any()
    assert content.image_mask.tolist() == [False] * len(rows) and not content.image.any()
    assert not (tmp_path / "image-efficientnet-lite0-224.parquet").exists()
