"""The trained fusion and user models behind numpy calls, on torch or ONNX Runtime.

Serving and batch encoding call `embed_items`, `embed_users` and `step_user` and never care which
backend runs; `RuntimeConfig.backend` decides. ONNX files are named by a fingerprint of the weights,
so a retrained model is re-exported and a stale export is never picked up.

A checkpoint's `ModelManifest` (beside it, `serving.json`) records what serving needs to know
without loading it, so a replica that only fuses or ranks items runs the exported graphs on ONNX
Runtime and never imports torch (about 200 MB of RSS per replica).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dynrec.config import RuntimeConfig

if TYPE_CHECKING:
    import torch

    from dynrec.models.model import DynrecModel

MANIFEST_FILE = "serving.json"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """12 hex digits of sha256 over every parameter and buffer, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    checkpoint_sha256: str  # the checkpoint this describes; any other checkpoint makes it stale
    fingerprint: str
    dim: int
    input_dims: dict[str, int]
    item_ids: list[str]  # the trained ID rows, in order
    # the tuned text encoder's folder beside the checkpoint (dynrec.models.text_tower), "" for the
    # configured one: the text model every item's text vector must come from for this model
    text_model: str = ""

    @classmethod
    def read(cls, model_path: str | Path) -> ModelManifest | None:
        """The manifest beside `model_path`, or None when there is none or it describes another checkpoint."""
        path = Path(model_path).with_name(MANIFEST_FILE)
        if not path.is_file():
            return None
        manifest = cls(**json.loads(path.read_text()))
        return manifest if manifest.checkpoint_sha256 == file_digest(model_path) else None

    def write(self, model_path: str | Path) -> None:
        path = Path(model_path).with_name(MANIFEST_FILE)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(dataclasses.asdict(self)))
        os.replace(temp, path)


GRAPHS = ("fusion", "user_embed", "user_step")  # every graph a runtime runs, exported as <graph>-<fingerprint>.onnx


def exported_graphs(runtime: RuntimeConfig, fingerprint: str) -> list[Path] | None:
    """The graphs (`GRAPHS`, in order) exported for weights `fingerprint`, or None unless all exist."""
    paths = [Path(runtime.onnx_dir) / f"{graph}-{fingerprint}.onnx" for graph in GRAPHS]
    return paths if all(p.is_file() for p in paths) else None


class ModelRuntime:
    def __init__(self, model: DynrecModel, runtime: RuntimeConfig | None = None):
        self.model = model.eval()
        self.runtime = runtime or RuntimeConfig()
        self.fingerprint = weights_fingerprint(model)
        self.dim = model.config.dim
        fusion = model.fusion
        self.input_dims = {m: fusion.projections[m][0].in_features for m in fusion.projections}
        self.fusion_session = self.user_session = self.step_session = None
        if self.runtime.backend == "onnx":
            from dynrec.onnx.export import (
                FusionGraph,
                UserGraph,
                UserStepGraph,
                export_graph,
                fusion_example,
                user_example,
                user_step_example,
            )
            from dynrec.onnx.session import exported_session

            self.fusion_session = exported_session(
                self.runtime,
                f"fusion-{self.fingerprint}",
                lambda path: export_graph(FusionGraph(fusion), fusion_example(fusion), path),
            )
            self.user_session = exported_session(
                self.runtime,
                f"user_embed-{self.fingerprint}",
                lambda path: export_graph(UserGraph(model.user), user_example(model.user), path),
            )
            self.step_session = exported_session(
                self.runtime,
                f"user_step-{self.fingerprint}",
                lambda path: export_graph(UserStepGraph(model.user), user_step_example(model.user), path),
                int8=False,  # see step_user
            )

    @classmethod
    def exported(cls, manifest: ModelManifest, runtime: RuntimeConfig) -> ModelRuntime | None:
        """A runtime on the checkpoint's exported graphs alone (no torch), or None when the
        backend is not ONNX or the graphs have not been exported to `runtime.onnx_dir` yet."""
        graphs = exported_graphs(runtime, manifest.fingerprint) if runtime.backend == "onnx" else None
        if graphs is None:
            return None
        from dynrec.onnx.session import exported_session

        def missing(path: Path) -> None:
            raise FileNotFoundError(path)

        self = cls.__new__(cls)
        self.model, self.runtime = None, runtime
        self.fingerprint, self.dim, self.input_dims = manifest.fingerprint, manifest.dim, dict(manifest.input_dims)
        fusion, user, step = graphs
        self.fusion_session, self.user_session = (exported_session(runtime, path.stem, missing) for path in (fusion, user))
        self.step_session = exported_session(runtime, step.stem, missing, int8=False)
        return self

    def manifest(self, checkpoint: str | Path, item_ids: list[str]) -> ModelManifest:
        """What serving needs to know of `checkpoint`; a tuned text tower is written out beside it as
        a whole text model folder, which the manifest names."""
        text_model = ""
        tower = getattr(self.model, "text_tower", None)
        if tower is not None:
            from dynrec.models.text_tower import save_tuned_encoder, tuned_encoder_name

            text_model = tuned_encoder_name(tower)
            if not (Path(checkpoint).parent / text_model).is_dir():
                save_tuned_encoder(tower, Path(checkpoint).parent / text_model)
        return ModelManifest(file_digest(checkpoint), self.fingerprint, self.dim, self.input_dims, list(item_ids), text_model)

    def embed_items(
        self,
        item_index: np.ndarray,
        text: np.ndarray | None = None,
        text_mask: np.ndarray | None = None,
        image: np.ndarray | None = None,
        image_mask: np.ndarray | None = None,
        behaviour: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, dim) unit item embeddings. A modality the model does not use may be left out;
        `item_index` outside [0, n_items) marks an item embedded from content alone."""
        n = len(item_index)
        if n == 0:  # an empty catalogue; the graphs cannot reshape zero rows
            return np.zeros((0, self.dim), np.float32)

        def given(array, width, dtype=np.float32):
            return np.zeros((n, width), dtype) if array is None else np.ascontiguousarray(array, dtype)

        feeds = {
            "item_index": np.asarray(item_index, np.int64),
            "text": given(text, self.input_dims.get("text", 1)),
            "text_mask": np.zeros(n, bool) if text_mask is None else np.asarray(text_mask, bool),
            "image": given(image, self.input_dims.get("image", 1)),
            "image_mask": np.zeros(n, bool) if image_mask is None else np.asarray(image_mask, bool),
            "behaviour": given(behaviour, self.input_dims.get("behaviour", 1)),
        }
        if self.fusion_session is not None:
            return self.fusion_session(**feeds)
        import torch

        from dynrec.onnx.export import FusionGraph

        with torch.inference_mode():
            tensors = [torch.from_numpy(feeds[name]) for name in FusionGraph.inputs]
            return FusionGraph(self.model.fusion)(*tensors).numpy()

    def embed_users(
        self, items: np.ndarray, event_types: np.ndarray, gaps: np.ndarray, values: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        """(B, dim) user embeddings from right-padded windows: items (B, T, dim) are the history's
        item embeddings, gaps are seconds since the previous event, lengths the real events."""
        feeds = {
            "items": np.ascontiguousarray(items, np.float32),
            "event_types": np.asarray(event_types, np.int64),
            "gaps": np.asarray(gaps, np.float32),
            "values": np.asarray(values, np.float32),
            "lengths": np.asarray(lengths, np.int64),
        }
        if self.user_session is not None:
            return self.user_session(**feeds)
        import torch

        from dynrec.onnx.export import UserGraph

        with torch.inference_mode():
            tensors = [torch.from_numpy(feeds[name]) for name in UserGraph.inputs]
            return UserGraph(self.model.user)(*tensors).numpy()

    @property
    def user_layers(self) -> int:
        """The user model's layers: a cached event is (layers, 2, dim) keys and values (`step_user`)."""
        if self.step_session is not None:
            return sum(name.startswith("past_keys_") for name in self.step_session.input_names)
        return len(self.model.user.blocks)

    def step_user(
        self, items: np.ndarray, event_types: np.ndarray, gaps: np.ndarray, values: np.ndarray, past: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One user's next events (items (T, dim), the rest (T,)) after the events whose keys and
        values are `past` (layers, 2, P, dim; P may be 0; each (P, dim) slab contiguous, as a prefix
        of a larger cache is): the user embedding at the last of them (dim,), as `embed_users`
        gives it for the whole window, and the new events' keys and values (layers, 2, T, dim). Its
        cost follows T, and hardly P: no re-encode (dynrec.users.incremental).

        Always fp32, even with `runtime.int8`: quantising activations per call would give each
        step its own rounding, and the few rows of a step gain nothing from int8."""
        feeds = {
            "items": np.ascontiguousarray(items, np.float32),
            "event_types": np.asarray(event_types, np.int64),
            "gaps": np.asarray(gaps, np.float32),
            "values": np.asarray(values, np.float32),
        }
        for layer, (keys, values_) in enumerate(past):
            feeds[f"past_keys_{layer}"] = np.ascontiguousarray(keys, np.float32)
            feeds[f"past_values_{layer}"] = np.ascontiguousarray(values_, np.float32)
        if self.step_session is not None:
            embedding, present = self.step_session.session.run(None, feeds)
        else:
            import torch

            from dynrec.onnx.export import UserStepGraph

            graph = UserStepGraph(self.model.user)
            with torch.inference_mode():
                embedding, present = (y.numpy() for y in graph(*(torch.from_numpy(feeds[name]) for name in graph.inputs)))
        return embedding, present.reshape(len(present), len(past), 2, -1).transpose(1, 2, 0, 3)
