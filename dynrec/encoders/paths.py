"""Which inference path each content encoder takes on this host, and a one-line account of it.

`runtime.precision` says how far the encoders may trade exactness for speed:

- `fp32`: the exact paths. `runtime.backend` picks torch eager or ONNX Runtime, and
  `runtime.int8` the dynamically quantised text MatMuls.
- `auto` (the default): the fastest path this host runs well. Where the CPU multiplies bf16 natively (AMX, or
  AVX-512 BF16) the text transformer runs in bf16 through torch (inductor-compiled with
  `runtime.compile`). The image CNN runs as a statically quantised int8 ONNX graph, calibrated on
  real posters: on AMX compiled by OpenVINO, which runs its int8 convolutions on AMX and the rest
  in bf16 (2.4x ONNX Runtime's fp32 at batch 32 in encode.json, 2.7x in side-by-side runs; min
  cosine 0.958, mean 0.992 to fp32 on 320 held-out posters; ML-1M NDCG@10 within 0.3 %),
  elsewhere with int8 dot-product units (VNNI), or where OpenVINO is not installed, by ONNX
  Runtime (2.1x in encode.json, 1.6x side by side; min cosine 0.975, mean 0.994). Weights without
  calibrated ranges run the fp32 export in bf16 through OpenVINO on AMX (1.7x side by side, min
  cosine 0.994), in fp32 elsewhere.
  Each falls back to fp32 alone: bf16 emulated without those units is slower than fp32, and so is
  the int8 CNN without int8 dot products. A CUDA host keeps the fp32 paths. A trained model ranks
  the fast paths' vectors within 0.5 % of fp32's NDCG@10 (bench/results/encode.json), so it is
  the default.
- `fast`: the bf16 and int8 paths whatever the host (for parity tests, or a host whose flags are hidden):
  OpenVINO's image path where it is installed (without native bf16 it computes in fp32), else the
  int8 graph, which without VNNI or AMX drifts from fp32 (min cosine 0.77 on an AVX2-only EPYC).

Figures behind the choice: bench/results/encode.json (an AMX host) and encode_avx512.json (AVX-512
BF16 and VNNI, no AMX): `python -m bench.encode --skip ray,latency,int8,index,put [--results NAME]`.
Every path keeps its own cache file (see `precision_suffix`), so vectors of two precisions never
mix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

PRECISIONS = ("fp32", "auto", "fast")
AMX_FLAGS = frozenset({"amx_tile", "amx_bf16", "amx_int8"})
BF16_FLAGS = frozenset({"avx512_bf16"})  # native bf16 dot products without AMX (Cooper Lake, Zen 4)
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})  # int8 dot-product units without AMX

TEXT_FP32_TORCH, TEXT_FP32_ONNX, TEXT_INT8_ONNX, TEXT_BF16_TORCH = "torch-fp32", "onnx-fp32", "onnx-int8-dynamic", "torch-bf16"
IMAGE_FP32_TORCH, IMAGE_FP32_ONNX, IMAGE_INT8_STATIC = "torch-fp32", "onnx-fp32", "onnx-int8-static"
IMAGE_INT8_OPENVINO, IMAGE_BF16_OPENVINO = "openvino-int8-bf16", "openvino-bf16"


@functools.lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (empty where it is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is not readable)."""
    return frozenset(cpuinfo().get("flags", "").split())


def has_amx(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has the AMX tile unit with its bf16 and int8 instructions."""
    return AMX_FLAGS <= _flags(flags)


def _flags(flags: frozenset[str] | None) -> frozenset[str]:
    return cpu_flags() if flags is None else flags


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU multiplies bf16 in hardware (AMX, or AVX-512 BF16)."""
    return has_amx(flags) or bool(BF16_FLAGS & _flags(flags))


def native_int8(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has int8 dot-product units (AMX, or VNNI)."""
    return has_amx(flags) or bool(INT8_FLAGS & _flags(flags))


def cpu_label() -> str:
    """The host's units that decide the paths: "cpu amx", "cpu avx512-bf16 vnni", "cpu vnni" or "cpu"."""
    if has_amx():
        return "cpu amx"
    units = [name for name, present in (("avx512-bf16", native_bf16()), ("vnni", native_int8())) if present]
    return " ".join(["cpu", *units])


def has_cuda() -> bool:
    """Whether the installed onnxruntime build offers the CUDA provider (and so a GPU path)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def has_openvino() -> bool:
    """Whether OpenVINO is installed (a dependency on x86-64; absent elsewhere)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def _fast(runtime, native: Callable[[], bool]) -> bool:
    precision = getattr(runtime, "precision", "fp32")
    if precision == "fast":
        return True
    return precision == "auto" and not has_cuda() and native()


def text_path(runtime) -> str:
    """The text encoder's path under `runtime` (one of the TEXT_* names)."""
    if _fast(runtime, native_bf16):
        return TEXT_BF16_TORCH
    if runtime.backend == "torch":
        return TEXT_FP32_TORCH
    return TEXT_INT8_ONNX if runtime.int8 else TEXT_FP32_ONNX


def image_path(runtime) -> str:
    """The image encoder's path under `runtime` (one of the IMAGE_* names)."""
    if _fast(runtime, has_amx) and has_openvino():
        return IMAGE_INT8_OPENVINO
    if _fast(runtime, native_int8):
        return IMAGE_INT8_STATIC
    return IMAGE_FP32_TORCH if runtime.backend == "torch" else IMAGE_FP32_ONNX


def precision_suffix(path: str, int8: bool = False) -> str:
    """Cache-name suffix of a path: vectors that differ by precision are cached apart.

    fp32 paths keep their historical names (`-int8` for the `runtime.int8` ones) so existing
    caches stay valid.
    """
    if path in (TEXT_BF16_TORCH, IMAGE_BF16_OPENVINO):
        return "-bf16"
    if path in (IMAGE_INT8_STATIC, IMAGE_INT8_OPENVINO):
        return "-int8static"
    return "-int8" if int8 else ""


def chosen_path(runtime=None) -> str:
    """What the encoders run on this host, e.g.
    "text=torch-bf16 image=openvino-int8-bf16 (cpu amx, precision=auto)".

    For a health endpoint and the encode job's log. `runtime` defaults to `RuntimeConfig()`.
    """
    if runtime is None:
        from dynrec.config import RuntimeConfig

        runtime = RuntimeConfig()
    host = "cuda" if has_cuda() else cpu_label()
    precision = getattr(runtime, "precision", "fp32")
    text = text_path(runtime)
    if text == TEXT_BF16_TORCH and getattr(runtime, "compile", False):
        text += "-compiled"
    return f"text={text} image={image_path(runtime)} ({host}, precision={precision})"
