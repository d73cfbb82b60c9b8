"""Item encoders: pretrained text and image models, the content-embedding cache, behaviour features.

Names resolve lazily so that importing one light submodule (e.g. behaviour statistics on the
serving path) does not pull in torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TextEncoder": "dynrec.encoders.text",
    "ImageEncoder": "dynrec.encoders.image",
    "ContentEmbeddings": "dynrec.encoders.content",
    "EmbeddingCache": "dynrec.encoders.content",
    "content_hash": "dynrec.encoders.content",
    "encode_catalogue": "dynrec.encoders.content",
    "item_text": "dynrec.encoders.content",
    "BehaviourFeatures": "dynrec.encoders.behaviour",
    "chosen_path": "dynrec.encoders.paths",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
