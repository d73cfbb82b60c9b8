"""ONNX export of the encoders, fusion and user model, and an ONNX Runtime session wrapper.

The torch modules stay the source of truth: every export is checked for parity against them, and
`RuntimeConfig.backend` decides which of the two runs behind the same numpy-in, numpy-out calls.
"""

from dynrec.onnx.session import (
    OnnxSession,
    OpenVinoSession,
    calibrate_ranges,
    exported_session,
    pick_providers,
    quantize_int8,
    quantize_static_int8,
)

__all__ = [
    "OnnxSession", "OpenVinoSession", "calibrate_ranges", "exported_session", "pick_providers", "quantize_int8", "quantize_static_int8",
]
