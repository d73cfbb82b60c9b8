"""Which encoder path a host gets: bf16 text where the CPU multiplies bf16 natively, int8 images
where it has int8 dot products, fp32 everywhere else."""

import pytest

from dynrec.config import EncoderConfig, RuntimeConfig
from dynrec.encoders import paths
from dynrec.encoders.content import CachedImageEncoder, CachedTextEncoder, EmbeddingCache
from dynrec.encoders.image import image_encoder_cache_name, resolved_image_path

AMX_HOST = frozenset({"sse4_2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
ZEN4_HOST = frozenset({"sse4_2", "avx512f", "avx512_vnni", "avx512_bf16"})  # AVX-512 BF16 and VNNI, no AMX
ICE_LAKE_HOST = frozenset({"sse4_2", "avx512f", "avx512_vnni"})  # VNNI without bf16
AVX2_HOST = frozenset({"sse4_2", "avx2", "fma"})


@pytest.fixture
def host(monkeypatch):
    def fake(flags: frozenset, cuda: bool = False, openvino: bool = True):
        monkeypatch.setattr(paths, "cpu_flags", lambda: flags)
        monkeypatch.setattr(paths, "has_cuda", lambda: cuda)
        monkeypatch.setattr(paths, "has_openvino", lambda: openvino)

    return fake


def test_auto_takes_the_amx_paths_on_an_amx_cpu(host):
    host(AMX_HOST)
    runtime = RuntimeConfig(precision="auto")
    assert (paths.text_path(runtime), paths.image_path(runtime)) == (paths.TEXT_BF16_TORCH, paths.IMAGE_INT8_OPENVINO)
    assert paths.chosen_path(runtime) == "text=torch-bf16 image=openvino-int8-bf16 (cpu amx, precision=auto)"
    assert "text=torch-bf16-compiled " in paths.chosen_path(RuntimeConfig(precision="auto", compile=True))


def test_an_amx_cpu_without_openvino_falls_back_to_int8_images(host):
    host(AMX_HOST, openvino=False)
    runtime = RuntimeConfig(precision="auto")
    assert (paths.text_path(runtime), paths.image_path(runtime)) == (paths.TEXT_BF16_TORCH, paths.IMAGE_INT8_STATIC)
    assert paths.chosen_path(runtime) == "text=torch-bf16 image=onnx-int8-static (cpu amx, precision=auto)"


def test_auto_takes_bf16_text_and_int8_images_on_avx512_bf16_and_vnni_without_amx(host):
    host(ZEN4_HOST)
    assert not paths.has_amx()
    runtime = RuntimeConfig(precision="auto")
    assert (paths.text_path(runtime), paths.image_path(runtime)) == (paths.TEXT_BF16_TORCH, paths.IMAGE_INT8_STATIC)
    assert paths.chosen_path(runtime) == "text=torch-bf16 image=onnx-int8-static (cpu avx512-bf16 vnni, precision=auto)"


def test_auto_takes_int8_images_alone_where_the_cpu_has_vnni_but_no_bf16(host):
    host(ICE_LAKE_HOST)
    runtime = RuntimeConfig(precision="auto")
    assert (paths.text_path(runtime), paths.image_path(runtime)) == (paths.TEXT_FP32_ONNX, paths.IMAGE_INT8_STATIC)
    assert paths.chosen_path(runtime) == "text=onnx-fp32 image=onnx-int8-static (cpu vnni, precision=auto)"


def test_auto_falls_back_to_fp32_without_bf16_or_int8_units(host):
    host(AVX2_HOST)
    assert not paths.native_bf16() and not paths.native_int8()
    onnx, torch_, int8 = (RuntimeConfig(precision="auto"), RuntimeConfig("torch", precision="auto"),
                          RuntimeConfig(int8=True, precision="auto"))
    assert (paths.text_path(onnx), paths.image_path(onnx)) == (paths.TEXT_FP32_ONNX, paths.IMAGE_FP32_ONNX)
    assert (paths.text_path(torch_), paths.image_path(torch_)) == (paths.TEXT_FP32_TORCH, paths.IMAGE_FP32_TORCH)
    assert paths.text_path(int8) == paths.TEXT_INT8_ONNX
    assert paths.chosen_path(onnx) == "text=onnx-fp32 image=onnx-fp32 (cpu, precision=auto)"
    # ... and so do the cache names: an auto replica on this host shares the fp32 vectors
    assert CachedTextEncoder(EmbeddingCache("/nonexistent"), EncoderConfig(), onnx).name == "text-all-MiniLM-L6-v2-len128"
    assert image_encoder_cache_name(None, 224, onnx) == "image-efficientnet-lite0-224"


def test_a_cuda_host_keeps_fp32_even_with_amx(host):
    host(AMX_HOST, cuda=True)
    runtime = RuntimeConfig(precision="auto")
    assert (paths.text_path(runtime), paths.image_path(runtime)) == (paths.TEXT_FP32_ONNX, paths.IMAGE_FP32_ONNX)
    assert paths.chosen_path(runtime).endswith("(cuda, precision=auto)")


def test_auto_is_the_default_and_fast_forces_the_bf16_and_int8_paths(host):
    host(frozenset())
    assert RuntimeConfig().precision == "auto"
    assert paths.chosen_path() == "text=onnx-fp32 image=onnx-fp32 (cpu, precision=auto)"
    host(AMX_HOST)
    assert paths.chosen_path() == "text=torch-bf16 image=openvino-int8-bf16 (cpu amx, precision=auto)"
    host(AVX2_HOST)
    fast = RuntimeConfig(precision="fast")
    assert (paths.text_path(fast), paths.image_path(fast)) == (paths.TEXT_BF16_TORCH, paths.IMAGE_INT8_OPENVINO)
    host(AVX2_HOST, openvino=False)
    assert paths.image_path(fast) == paths.IMAGE_INT8_STATIC
    with pytest.raises(ValueError, match="precision"):
        RuntimeConfig(precision="bf17")


def test_each_precision_caches_apart(host):
    host(AMX_HOST)
    cache = EmbeddingCache("/nonexistent")
    names = {
        precision: (CachedTextEncoder(cache, EncoderConfig(), RuntimeConfig(precision=precision)).name,
                    CachedImageEncoder(cache, EncoderConfig(), RuntimeConfig(precision=precision)).name)
        for precision in ("fp32", "auto")
    }
    assert names["fp32"] == ("text-all-MiniLM-L6-v2-len128", "image-efficientnet-lite0-224")
    assert names["auto"][0] == "text-all-MiniLM-L6-v2-len128-bf16"
    assert names["auto"][1].startswith("image-efficientnet-lite0-224-int8static-")  # with its recipe...
    assert names["auto"][1].endswith("-openvino-bf16")  # ...and apart from ONNX Runtime's run of the graph
    host(AMX_HOST, openvino=False)
    int8 = CachedImageEncoder(cache, EncoderConfig(), RuntimeConfig(precision="auto")).name
    assert int8.startswith("image-efficientnet-lite0-224-int8static-") and int8 != names["auto"][1]


def test_weights_without_calibrated_ranges_run_the_fp32_graph_in_openvino_bf16_on_amx(host, tmp_path):
    host(AMX_HOST)
    runtime = RuntimeConfig(precision="auto")
    assert resolved_image_path(None, 224, runtime) == paths.IMAGE_INT8_OPENVINO
    assert resolved_image_path(tmp_path / "finetuned.pth", 224, runtime) == paths.IMAGE_BF16_OPENVINO
    assert image_encoder_cache_name(None, 260, runtime) == "image-efficientnet-lite0-260-bf16"


def test_int8_images_need_ranges_calibrated_for_these_weights(host, tmp_path):
    host(ZEN4_HOST)
    runtime = RuntimeConfig(precision="auto")
    assert resolved_image_path(None, 224, runtime) == paths.IMAGE_INT8_STATIC
    # other weights or another resolution have no calibrated ranges: fp32, under the fp32 cache name
    assert resolved_image_path(tmp_path / "finetuned.pth", 224, runtime) == paths.IMAGE_FP32_ONNX
    assert resolved_image_path(None, 260, runtime) == paths.IMAGE_FP32_ONNX
    assert image_encoder_cache_name(None, 260, runtime) == "image-efficientnet-lite0-260"


def test_cpu_flags_are_read_from_this_machine():
    flags = paths.cpu_flags()
    assert isinstance(flags, frozenset)
    assert paths.has_amx() == (paths.AMX_FLAGS <= flags)
    assert paths.native_bf16() == (paths.has_amx() or "avx512_bf16" in flags)
