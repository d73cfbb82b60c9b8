"""The packaged EfficientNet-Lite0 image encoder, run for real on ML-1M posters."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dynrec.config import EncoderConfig, RuntimeConfig
from dynrec.encoders.image import ImageEncoder


@pytest.fixture(scope="module", params=["torch", "onnx"])
def encoder(request):
    return ImageEncoder.from_config(EncoderConfig(), RuntimeConfig(backend=request.param, precision="fp32"))


@pytest.fixture(scope="module")
def poster_paths(ml1m):
    paths = [image["path"] for image in ml1m.items["image"].to_pylist() if image]
    return paths[:4]


def test_posters_give_finite_pooled_features(encoder, poster_paths):
    features, valid = encoder.encode(poster_paths)
    assert features.shape == (4, 1280) and features.dtype == np.float32
    assert valid.tolist() == [True] * 4
    assert np.isfinite(features).all()
    assert (np.abs(features).sum(axis=1) > 0).all()
    assert not np.allclose(features[0], features[1])
    assert encoder.cache_name == "image-efficientnet-lite0-224"
    if encoder.runtime.backend == "torch":
        assert not encoder.model.training and encoder.session is None
    else:  # serving keeps only the ONNX Runtime session
        assert encoder.model is None and encoder.session is not None


def test_preprocess_shape_and_range(encoder, poster_paths):
    pixels = encoder.preprocess(poster_paths[0])
    assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32
    assert pixels.min() >= -127 / 128 and pixels.max() <= 128 / 128
    assert pixels.std() > 0.1


def test_bytes_path_struct_and_pil_agree(encoder, poster_paths):
    path = poster_paths[0]
    data = Path(path).read_bytes()
    forms = [path, Path(path), data, {"path": None, "bytes": data}, {"path": path, "bytes": None}, Image.open(path)]
    features, valid = encoder.encode(forms)
    assert valid.all()
    for row in features[1:]:
        np.testing.assert_array_equal(row, features[0])


def test_unusable_images_are_masked_and_never_raise(encoder, poster_paths, tmp_path):
    data = Path(poster_paths[0]).read_bytes()
    truncated = data[: len(data) // 2]
    missing = [None, float("nan"), np.float32("nan"), {"path": None, "bytes": None}, {"path": float("nan"), "bytes": b""}]
    bad = [*missing, b"not an image", truncated, str(tmp_path / "missing.jpg")]
    for image in bad:
        assert encoder.preprocess(image) is None
    features, valid = encoder.encode([poster_paths[0], *bad])
    assert valid.tolist() == [True] + [False] * len(bad)
    assert not features[1:].any()
    assert features[0].any()


def test_encoding_in_several_batches_gives_the_rows_of_one(encoder, poster_paths):
    """The next batch is cropped on a helper thread while one runs: rows must keep their places,
    unusable images included, whatever the batch size."""
    images = [None, poster_paths[0], b"not an image", poster_paths[1], poster_paths[2], None, poster_paths[3]]
    whole, whole_valid = encoder.encode(images)
    small = ImageEncoder(image_size=224, batch_size=2, runtime=encoder.runtime)
    split, split_valid = small.encode(images)
    assert whole_valid.tolist() == split_valid.tolist() == [False, True, False, True, True, False, True]
    np.testing.assert_allclose(split, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("wide", [True, False])
def test_non_square_images_are_centre_cropped(encoder, wide):
    # 896x448 with a blue band over columns 200..696: after the short side goes to 224 the image is
    # 448x224 and the band covers 100..348, so only a centred 224 crop (112..336) is entirely blue.
    long, short = 896, 448
    canvas = np.zeros((short, long, 3), dtype=np.uint8)
    canvas[..., 0] = 255
    canvas[:, 200:696] = (0, 0, 255)
    image = Image.fromarray(canvas if wide else canvas.transpose(1, 0, 2))
    pixels = encoder.preprocess(image)
    assert pixels.shape == (3, 224, 224)
    np.testing.assert_allclose(pixels[0], -127 / 128, atol=1e-6)
    np.testing.assert_allclose(pixels[2], 128 / 128, atol=1e-6)


def test_cropping_inside_the_resize_gives_the_scaled_images_centre(encoder, poster_paths):
    """The crop box goes to the resize for speed; the pixels must stay those of scaling the whole
    poster and cutting its centre (one level of rounding apart at most)."""
    for path in poster_paths:
        rgb = Image.open(path).convert("RGB")
        scale = 224 / min(rgb.size)
        scaled = rgb.resize((max(224, round(rgb.width * scale)), max(224, round(rgb.height * scale))), Image.Resampling.BILINEAR)
        left, top = (scaled.width - 224) // 2, (scaled.height - 224) // 2
        reference = np.asarray(scaled.crop((left, top, left + 224, top + 224)), dtype=np.float32).transpose(2, 0, 1)
        levels = np.abs(encoder.preprocess(path) * 128 + 127 - reference)
        assert levels.max() <= 1.0 + 1e-4 and levels.mean() < 0.05


def test_grayscale_and_alpha_images_become_rgb(encoder):
    buffer = io.BytesIO()
    Image.new("LA", (50, 80), (200, 128)).save(buffer, format="PNG")
    pixels = encoder.preprocess(buffer.getvalue())
    assert pixels.shape == (3, 224, 224)
    np.testing.assert_allclose(pixels, (200 - 127) / 128, atol=1e-6)
