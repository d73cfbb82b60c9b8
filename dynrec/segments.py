"""User segments: k-means over user embeddings joined with one-hot attributes, and readable profiles.

k comes from the config, or is the one with the best silhouette over k_min..k_max (scored on a
seeded sample). The same users, embeddings and seed give the same segments. Each segment's
profile names its size, top categories, top items, the terms that set its items' text apart from
the catalogue's, and a label built from them. A `Segmentation` is immutable once fitted; the
service swaps whole objects, so a request sees one version.
"""

from __future__ import annotations

import pickle
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dynrec.config import SegmentConfig
from dynrec.state import StateStore, unpickled

GENDER_WORDS = {"F": "women", "M": "men"}
STOP_WORDS = frozenset(
    "about after again also among another around back based because been before being between both came come could"
    " does during each even film films finds first from gets have here himself herself into just later life like"
    " made make many more most movie much must never only other over own same said series several should since"
    " some story such take than that their them then there these they this those though three through time told"
    " under until upon very well were what when where which while who whom will with within without would year"
    " years young your after american released directed starring stars written produced plot".split()
)


SNAPSHOT = "segments"  # the state-store snapshot a fit is saved as
SNAPSHOT_VERSION = 3  # 2: with each segment's popular items; 3: with the model the embeddings came from

@dataclass
class UserTable:
    """What segmentation reads about users: ids, unit embeddings, attributes and history items."""

    user_ids: list[str]
    embeddings: np.ndarray  # (n, d)
    attributes: list[dict[str, str]]
    histories: list[list[str]]  # item ids, newest last
    model_version: str | None = None  # the model that made the embeddings (None: unknown, or several)


@dataclass
class ItemInfo:
    title: str
    categories: list[str]
    text: str


@dataclass
class SegmentAssignment:
    """A user's segment as `GET /v1/users/{id}` reports it (None before there are segments)."""

    segment_id: int | None
    label: str
    version: int | None


@dataclass
class SegmentProfile:
    segment_id: int
    label: str
    size: int
    top_categories: list[str]
    top_items: list[dict[str, str]]  # {item_id, title}
    terms: list[str]
    attributes: dict[str, str]  # values clearly over-represented in the segment


@dataclass
class Segmentation:
    version: int
    seed: int
    silhouette: float
    centroids: np.ndarray  # (k, d + attribute columns)
    columns: list[tuple[str, str]]  # the one-hot attribute columns after the embedding
    attribute_weight: float
    profiles: list[SegmentProfile]
    members: dict[str, int]
    # per segment: its members' most common items, as the share of members who interacted with each
    popular: list[dict[str, float]] = field(default_factory=list)
    # the model whose user embeddings the centroids live among: another model's embedding is not
    # comparable with them (see `assign`)
    model_version: str | None = None

    @property
    def k(self) -> int:
        return len(self.centroids)

    def features(self, embedding: np.ndarray | None, attributes: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """The user's feature row and a mask of the columns it has (no embedding: attributes only)."""
        dim = self.centroids.shape[1] - len(self.columns)
        row = np.zeros(self.centroids.shape[1], np.float32)
        mask = np.ones(self.centroids.shape[1], bool)
        if embedding is None:
            mask[:dim] = False
        else:
            row[:dim] = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
        for c, (key, value) in enumerate(self.columns):
            row[dim + c] = self.attribute_weight * (str(attributes.get(key)) == value)
        return row, mask

    def assign(self, embedding: np.ndarray | None, attributes: dict[str, str], model_version: str | None = None) -> int | None:
        """The nearest segment; a user with neither embedding nor attributes goes to the largest;
        None before there are any segments (too few users to fit them). An embedding made by another
        model than the fit's (`model_version`, when given) is left out: the user is placed by their
        attributes until the segments are refitted under that model."""
        if self.k == 0:
            return None
        if model_version is not None and self.model_version is not None and model_version != self.model_version:
            embedding = None
        if embedding is None and not any(k in attributes for k, _ in self.columns):
            return int(np.argmax([p.size for p in self.profiles]))
        row, mask = self.features(embedding, attributes)
        return int(np.argmin(((self.centroids[:, mask] - row[mask]) ** 2).sum(axis=1)))

    def profile(self, segment_id: int) -> SegmentProfile:
        return self.profiles[segment_id]

    def basis(self, segment_id: int) -> tuple[np.ndarray, dict[str, float]]:
        """What a segment's recommendations start from: its centroid in the user-embedding space
        (unit length; the attribute columns left out) and its popular items."""
        dim = self.centroids.shape[1] - len(self.columns)
        centroid = self.centroids[segment_id, :dim]
        return centroid / max(float(np.linalg.norm(centroid)), 1e-12), self.popular[segment_id] if self.popular else {}

    def summary(self) -> dict:
        return {"version": self.version, "k": self.k, "silhouette": self.silhouette, "seed": self.seed,
                "segments": [asdict(p) for p in self.profiles]}

    def save(self, store: StateStore) -> None:
        """Into the state store, where every replica on any node finds the same version."""
        store.save_snapshot(SNAPSHOT, self.version, pickle.dumps((SNAPSHOT_VERSION, self), protocol=5))

    @classmethod
    def load(cls, store: StateStore) -> Segmentation | None:
        """The store's segmentation; None before the first fit (or one saved in another layout)."""
        saved = store.load_snapshot(SNAPSHOT)
        if saved is None:
            return None
        payload = unpickled(saved[1], SNAPSHOT)
        return payload[1] if isinstance(payload, tuple) and payload[0] == SNAPSHOT_VERSION else None


class SegmentationFollower:
    """The store's segmentation, for a replica that only reads it (a Ranker placing new users):
    reloaded every `every_s` on a daemon thread, so a request never waits on the read."""

    def __init__(self, store: StateStore, every_s: float):
        self.store, self.every_s = store, every_s
        self.current = Segmentation.load(store)
        self._stop = threading.Event()
        if every_s > 0:
            threading.Thread(target=self._loop, name="segments-follower", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                loaded = Segmentation.load(self.store)
            except Exception as error:  # a store hiccup: keep the segments held and read again next time
                print(f"segments follower: could not read the segments ({type(error).__name__}: {error})", flush=True)
                continue
            if loaded is not None and (self.current is None or loaded.version != self.current.version):
                self.current = loaded

    def stop(self) -> None:
        self._stop.set()


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm from a k-means++ start; returns (centroids, labels)."""
    rng = np.random.default_rng(seed)
    centroids = [x[rng.integers(len(x))]]
    closest = ((x - centroids[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        centroids.append(x[rng.choice(len(x), p=closest / closest.sum())] if closest.sum() > 0 else x[rng.integers(len(x))])
        closest = np.minimum(closest, ((x - centroids[-1]) ** 2).sum(axis=1))
    centroids = np.array(centroids)
    labels = np.zeros(len(x), np.int64)
    for step in range(iterations):
        distances = (x**2).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None, :]
        new_labels = distances.argmin(axis=1)
        if step and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centroids[c] = members.mean(axis=0)
    return centroids, labels


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette: (b - a) / max(a, b), a the mean distance within a point's cluster, b to the nearest other."""
    distances = np.sqrt(np.maximum((x**2).sum(1)[:, None] - 2 * x @ x.T + (x**2).sum(1)[None, :], 0))
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return 0.0
    mean_to = np.stack([distances[:, labels == c].mean(axis=1) for c in clusters], axis=1)
    sizes = np.array([(labels == c).sum() for c in clusters])
    own = np.searchsorted(clusters, labels)
    a = mean_to[np.arange(len(x)), own] * sizes[own] / np.maximum(sizes[own] - 1, 1)
    mean_to[np.arange(len(x)), own] = np.inf
    b = mean_to.min(axis=1)
    return float(np.mean((b - a) / np.maximum(np.maximum(a, b), 1e-12)))


def fit_segments(users: UserTable, items: dict[str, ItemInfo], config: SegmentConfig, version: int = 1) -> Segmentation:
    columns = sorted({(k, str(v)) for a in users.attributes for k, v in a.items() if k in ("gender", "age", "occupation")})
    shell = Segmentation(version, config.seed, 0.0, np.zeros((1, users.embeddings.shape[1] + len(columns))), columns,
                         config.attribute_weight, [], {})
    if len(users.user_ids) < 2 * max(config.k, config.k_min):  # too few users to split (an empty start)
        return replace(shell, centroids=shell.centroids[:0])
    x = np.stack([shell.features(e, a)[0] for e, a in zip(users.embeddings, users.attributes)]).astype(np.float64)
    rng = np.random.default_rng(config.seed)
    sample = rng.choice(len(x), min(config.sample, len(x)), replace=False)
    candidates = [config.k] if config.k else range(config.k_min, config.k_max + 1)
    best = None
    for k in candidates:
        centroids, labels = kmeans(x, k, config.seed)
        score = silhouette(x[sample], labels[sample])
        if best is None or score > best[0]:
            best = (score, centroids, labels)
    score, centroids, labels = best
    profiles = profile_segments(users, labels, len(centroids), items, config.top)
    members = {u: int(s) for u, s in zip(users.user_ids, labels)}
    return Segmentation(version, config.seed, score, centroids.astype(np.float32), columns, config.attribute_weight,
                        profiles, members, popular_items(users, labels, len(centroids)), users.model_version)


def popular_items(users: UserTable, labels: np.ndarray, k: int, top: int = 200) -> list[dict[str, float]]:
    """Each segment's `top` most common items, with the share of its members who interacted with each."""
    popular = []
    for s in range(k):
        member_rows = np.flatnonzero(labels == s)
        counts = Counter(i for r in member_rows for i in set(users.histories[r]))
        popular.append({i: n / max(len(member_rows), 1) for i, n in counts.most_common(top)})
    return popular


def terms_of(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z][a-z'-]{3,}", text.lower()) if w not in STOP_WORDS]


def profile_segments(users: UserTable, labels: np.ndarray, k: int, items: dict[str, ItemInfo], top: int) -> list[SegmentProfile]:
    overall_items: Counter = Counter(i for h in users.histories for i in h)
    overall_terms: Counter = Counter()
    item_terms = {i: Counter(terms_of(items[i].text)) for i in overall_items if i in items}
    for item_id, count in overall_items.items():
        for term, n in item_terms.get(item_id, {}).items():
            overall_terms[term] += n * count
    total_terms = sum(overall_terms.values()) or 1
    overall_attrs = Counter((k_, v) for a in users.attributes for k_, v in a.items())
    profiles = []
    for s in range(k):
        member_rows = np.flatnonzero(labels == s)
        seg_items: Counter = Counter(i for r in member_rows for i in users.histories[r])
        seg_terms: Counter = Counter()
        for item_id, count in seg_items.items():
            for term, n in item_terms.get(item_id, {}).items():
                seg_terms[term] += n * count
        seg_total = sum(seg_terms.values()) or 1
        # distinctive: smoothed log-ratio of the term's share in the segment to its share overall
        distinct = sorted(
            (t for t, n in seg_terms.items() if n >= 5),
            key=lambda t: -np.log((seg_terms[t] + 1) / seg_total) + np.log((overall_terms[t] + 1) / total_terms),
        )[:top]
        # lift over the whole catalogue's popularity, among the segment's 50 most common items
        common = seg_items.most_common(50)
        lifted = sorted(common, key=lambda ic: -(ic[1] / max(len(member_rows), 1)) / (overall_items[ic[0]] / len(users.user_ids)))
        top_items = [{"item_id": i, "title": items[i].title if i in items else i} for i, _ in lifted[:top]]
        attrs: dict[str, str] = {}
        seg_attrs = Counter((k_, v) for r in member_rows for k_, v in users.attributes[r].items())
        for key in ("gender", "age", "occupation"):
            options = [(v, n) for (k_, v), n in seg_attrs.items() if k_ == key]
            if options:
                value, n = max(options, key=lambda vn: vn[1] / max(overall_attrs[(key, vn[0])], 1))
                lift = (n / len(member_rows)) / (overall_attrs[(key, value)] / len(users.user_ids))
                if lift >= 1.25 and n / len(member_rows) >= 0.2:
                    attrs[key] = value
        categories = top_categories(seg_items.items(), lambda i: items[i].categories if i in items else [], top)
        profiles.append(SegmentProfile(s, segment_label(categories, attrs, distinct), len(member_rows),
                                       categories, top_items, distinct, attrs))
    return profiles


def top_categories(weighted_items: Iterable[tuple[str, float]], categories_of: Callable[[str], list[str]], top: int) -> list[str]:
    """The `top` categories by the weight of the items that carry them (an item counts in full
    for each of its categories): what labels a segment, and a user's interest."""
    weights: Counter = Counter()
    for item_id, weight in weighted_items:
        for category in categories_of(item_id):
            weights[category] += weight
    return [c for c, _ in weights.most_common(top)]


def segment_label(categories: list[str], attributes: dict[str, str], terms: list[str]) -> str:
    """e.g. "Sci-Fi & Action fans, mostly men aged 18-24 (alien, galaxy)"."""
    label = " & ".join(categories[:2]) + " fans" if categories else "Mixed tastes"
    who = GENDER_WORDS.get(attributes.get("gender", ""), "")
    if "age" in attributes:
        who = f"{who or 'people'} aged {attributes['age']}"
    if "occupation" in attributes:
        who = f"{who or 'people'} ({attributes['occupation']})" if who else attributes["occupation"]
    if who:
        label += f", mostly {who}"
    if terms:
        label += f" ({', '.join(terms[:2])})"
    return label


def plot_segments(users: UserTable, segmentation: Segmentation, path: str | Path) -> Path:
    """A PNG of every user on the first two principal components of their segment features,
    coloured by segment, with each segment's label at its centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.stack([segmentation.features(e, a)[0] for e, a in zip(users.embeddings, users.attributes)])
    labels = np.array([segmentation.members[u] for u in users.user_ids])
    centred = x - x.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    points = centred @ axes[:2].T
    figure, ax = plt.subplots(figsize=(10, 7))
    colours = plt.get_cmap("tab10" if segmentation.k <= 10 else "tab20")
    for s, profile in enumerate(segmentation.profiles):
        mine = points[labels == s]
        ax.scatter(mine[:, 0], mine[:, 1], s=4, alpha=0.5, color=colours(s % colours.N), label=f"[{s}] {profile.label[:60]}")
        if len(mine):
            ax.annotate(str(s), mine.mean(axis=0), fontsize=12, weight="bold", ha="center")
    ax.set_title(f"{len(users.user_ids):,} users in {segmentation.k} segments (silhouette {segmentation.silhouette:.2f})")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.legend(fontsize=7, markerscale=3, loc="best")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
