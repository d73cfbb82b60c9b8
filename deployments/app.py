"""The application graph that `serve_config.yaml` imports: `serve run serve_config.yaml`.

Ingress -> {TextEncoder, ImageEncoder, Fusion, Ranker, Segments, UserState shard(s)}; Segments reads
the UserState shards. `build_app` takes `user_shards` (from the config's `args`) to split users
across that many UserState deployments, and `ranker_replicas` to start with a fixed number of
Ranker replicas instead of autoscaling.
"""

from __future__ import annotations

from ray.serve import Application

from deployments.common import load_config
from deployments.encoders import ImageEncoder, TextEncoder
from deployments.fusion import Fusion
from deployments.ingress import Ingress
from deployments.ranker import Ranker
from deployments.segments import Segments
from deployments.user_state import UserState

# Ray starts its worker processes at nice 15, below its own daemons and below anything started at
# the default priority, such as a training job's driver or a worker that is still booting: the
# serving replicas run at the default priority instead (serve_config.yaml sets the same)
SERVING_WORKER_ENV = {"RAY_worker_niceness": "0"}


def build_app(args: dict | None = None) -> Application:
    shards = int((args or {}).get("user_shards", load_config().serving.user_shards))
    users = [UserState.options(name="UserState" if shards == 1 else f"UserState{i}").bind(i, shards) for i in range(shards)]
    replicas = (args or {}).get("ranker_replicas")
    ranker = Ranker.options(num_replicas=int(replicas)) if replicas else Ranker
    return Ingress.bind(TextEncoder.bind(), ImageEncoder.bind(), Fusion.bind(), ranker.bind(), Segments.bind(*users), *users)


app = build_app()
