"""Text and image encoder deployments: pretrained models, ONNX Runtime by default."""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.common import REPLICA_HEALTH_CHECK_PERIOD_S, load_config


@serve.deployment(health_check_period_s=REPLICA_HEALTH_CHECK_PERIOD_S, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=16)
class TextEncoder:
    def __init__(self):
        from dynrec.artifacts.prepare import served_model_path, with_text_model
        from dynrec.encoders.text import TextEncoder as Encoder

        config = load_config()
        model_path = served_model_path(config)
        if model_path is not None:  # a model trained with a tuned text encoder reads that encoder's vectors
            config = with_text_model(config, model_path)
        self.encoder = Encoder.from_config(config.encoders, config.runtime)
        self.runtime = config.runtime

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)

    def path(self) -> str:
        """The inference paths this replica's host gives the encoders (dynrec.encoders.paths)."""
        from dynrec.encoders.paths import chosen_path

        return chosen_path(self.runtime)


@serve.deployment(health_check_period_s=REPLICA_HEALTH_CHECK_PERIOD_S, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=16)
class ImageEncoder:
    def __init__(self):
        from dynrec.encoders.image import ImageEncoder as Encoder

        config = load_config()
        self.encoder = Encoder.from_config(config.encoders, config.runtime)

    def encode(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(n, 1280) features and which images could be decoded."""
        return self.encoder.encode(images)
