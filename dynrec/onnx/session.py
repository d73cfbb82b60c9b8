"""ONNX Runtime sessions: provider choice, thread pinning and optional int8 weights; and OpenVINO's,
for a graph it runs faster on this CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np


def pick_providers() -> list[str]:
    """CUDA first when this onnxruntime build and machine offer it, CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def replica_threads() -> int:
    """CPUs this process may use (its affinity mask, which Ray and containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def quantize_int8(source: str | Path, target: str | Path, skip: str | None = None) -> Path:
    """Dynamic int8 quantisation of the MatMuls (per-channel int8 weights, activations quantised
    at run time). MatMul nodes whose name matches the regex `skip` stay fp32.

    Written under a temp name first so a concurrent reader never loads a half-written file.
    """
    import re

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    excluded = []
    if skip:
        graph = onnx.load(str(source), load_external_data=False).graph
        excluded = [n.name for n in graph.node if n.op_type == "MatMul" and re.search(skip, n.name)]
    temp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.onnx")
    quantize_dynamic(
        str(source), str(temp), weight_type=QuantType.QInt8, per_channel=True,
        op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded,
    )
    os.replace(temp, target)
    return target


def _prepared(source: str | Path, folder: str) -> Path:
    """`source` after onnxruntime's pre-quantisation pass (shape inference, constant folding): the
    graph whose tensor names calibration and quantisation both refer to."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(folder) / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    return prepared


def calibrate_ranges(source: str | Path, batches) -> dict[str, tuple[float, float]]:
    """Min/max of every activation of the fp32 graph at `source` over `batches` (dicts of numpy
    inputs by name): the calibration `quantize_static_int8` consumes, as plain floats so that it
    can be kept in source control beside the code."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    class Reader:
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        calibrator = create_calibrator(
            _prepared(source, folder), op_types_to_calibrate=None, augmented_model_path=str(Path(folder) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(Reader())
        ranges = calibrator.compute_data()
    return {name: (float(np.asarray(data.range_value[0]).min()), float(np.asarray(data.range_value[1]).max()))
            for name, data in ranges.items()}


def quantize_static_int8(source: str | Path, target: str | Path, ranges: dict[str, tuple[float, float]],
                         skip: str | None = None, exclude_ops: tuple[str, ...] = ("GlobalAveragePool",)) -> Path:
    """Static int8 quantisation (QDQ: uint8 activations with the calibrated `ranges`, per-channel
    int8 weights) of every Conv, Clip and Add. Nodes of `exclude_ops` stay fp32 (quantising the
    pooled output would round the very features we keep), and so do nodes whose name matches the
    regex `skip`.

    Raises KeyError when `ranges` lacks a tensor the graph needs (ranges made for another export).
    """
    import re
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    target = Path(target)
    temp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.onnx")
    with tempfile.TemporaryDirectory() as folder:
        prepared = _prepared(source, folder)
        graph = onnx.load(str(prepared)).graph
        wanted = {name for node in graph.node for name in (*node.input, *node.output)} - {i.name for i in graph.initializer}
        missing = sorted(n for n in wanted if n and n not in ranges)
        if missing:
            raise KeyError(f"no calibrated range for {len(missing)} tensors of {Path(source).name}, e.g. {missing[:3]}")
        data = TensorsData(CalibrationMethod.MinMax, {n: (np.float32(ranges[n][0]), np.float32(ranges[n][1])) for n in wanted if n})
        cache = Path(folder) / "ranges.json"
        save_tensors_data(data, cache)
        quantize_static(
            str(prepared), str(temp), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "Clip", "Add"], per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=[n.name for n in graph.node if n.op_type in exclude_ops or (skip and re.search(skip, n.name))],
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
        )
    os.replace(temp, target)
    return target


def declared_inputs(path: Path, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds a graph declares, by name; a missing one is an error that names the graph."""
    missing = [name for name in names if name not in feeds]
    if missing:
        raise ValueError(f"{path.name} needs inputs {missing}")
    return {name: feeds[name] for name in names}


class OnnxSession:
    """One model's InferenceSession, called with numpy arrays by input name; returns the first output.

    `threads` pins intra-op parallelism (0: the CPUs this replica may use). Oversubscribed sessions
    on one host slow each other down, so a Serve replica passes its own `num_cpus`.
    """

    def __init__(self, path: str | Path, threads: int = 0, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or replica_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), options, providers=providers or pick_providers())
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        """Runs on the inputs the graph declares; extra feeds (e.g. an unused modality) are ignored."""
        return self.session.run(None, declared_inputs(self.path, self.input_names, feeds))[0]


class OpenVinoSession:
    """An ONNX graph compiled by OpenVINO's CPU plugin, with OnnxSession's call: numpy arrays by
    input name in, the first output back.

    `precision` "bf16" computes in bf16 where the CPU multiplies it natively (AMX), and in fp32
    elsewhere (OpenVINO's own fallback). Each calling thread gets its own infer request, since one
    request runs one inference at a time.
    """

    def __init__(self, path: str | Path, threads: int = 0, precision: str = "bf16"):
        import threading

        import openvino as ov

        self.path = Path(path)
        self.model = ov.Core().compile_model(str(self.path), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": threads or replica_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        })
        self.input_names = [port.get_any_name() for port in self.model.inputs]
        self._requests = threading.local()

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.model.create_infer_request()
        outputs = request.infer(declared_inputs(self.path, self.input_names, feeds))
        return np.array(outputs[self.model.output(0)])  # a copy: the request reuses its buffers


def exported_session(
    runtime, name: str, export: Callable[[Path], object], int8_skip: str | None = None, int8: bool = True
) -> OnnxSession:
    """A session on `<runtime.onnx_dir>/<name>.onnx`, exported by `export(path)` on first use.

    With `runtime.int8` (unless `int8` is False: a graph may opt out) the quantised copy
    (`<name>.int8.onnx`, see `quantize_int8` for `int8_skip`) is made once and used instead.
    """
    path = Path(runtime.onnx_dir) / f"{name}.onnx"
    if not path.is_file():
        export(path)
    if runtime.int8 and int8:
        quantised = path.with_name(f"{name}.int8.onnx")
        if not quantised.is_file() or quantised.stat().st_mtime < path.stat().st_mtime:
            quantize_int8(path, quantised, int8_skip)
        path = quantised
    return OnnxSession(path, runtime.threads)
