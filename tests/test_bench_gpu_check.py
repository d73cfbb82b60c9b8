"""The GPU check script's steps, run on the CPU so that a lent GPU machine finds them working."""

from bench.gpu_check import step_onnx_cuda, step_training


def test_the_gpu_checks_training_and_onnx_steps_run_and_compare_against_the_cpu(data_dir, tmp_path):
    training = step_training("cpu", data_dir, epochs=1)
    assert training["placement_parity_abs_diff"] < 1e-6
    assert training["positions_per_s"]["device"] > 0 and training["positions_per_s"]["cpu"] > 0
    assert 0.0 < training["valid_ndcg@10_after"] <= 1.0

    onnx = step_onnx_cuda(training["model"], data_dir, tmp_path / "onnx", provider="CPUExecutionProvider")
    assert onnx["fused_max_abs_diff"] < 1e-4  # the exported fusion graph against torch
    assert onnx["text_titles_per_s"] > 0
    assert "skipped" in step_onnx_cuda(training["model"], data_dir, tmp_path / "onnx", provider="NoSuchProvider")
