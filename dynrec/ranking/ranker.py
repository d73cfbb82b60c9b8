"""Ranking: retrieval over the item index, business filters, optional MMR diversity, and a
readable reason for every result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from dynrec.items.catalog import Catalog
from dynrec.ranking.bandit import ClickBandit, ExplorationSettings, exploration_slots, place
from dynrec.ranking.prior import PriorRanking, blend_weight, blended, segment_shares, segment_term, standardise, with_segment
from dynrec.segments import Segmentation
from dynrec.users.incremental import event_features
from dynrec.users.shards import ReasonBasis, UserView

VERBS = {"rating": "rated", "view": "viewed", "click": "clicked", "add_to_cart": "added to your cart", "purchase": "bought"}


@dataclass
class Filters:
    include_categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    exclude_item_ids: list[str] = field(default_factory=list)

    def accepts(self, catalog: Catalog):
        include = {c.casefold() for c in self.include_categories}
        exclude = {c.casefold() for c in self.exclude_categories}
        if not include and not exclude:
            return None

        def accept(item_id: str) -> bool:
            categories = {c.casefold() for c in catalog.item(item_id).categories}
            return (not include or bool(categories & include)) and not (categories & exclude)

        return accept


@dataclass
class Ranked:
    item_id: str
    score: float
    reason: str
    explored: bool = False
    title: str = ""


@dataclass
class Ranking:
    """A ranking request's answer: the results, the model version that produced them, and why
    the list is short when it is."""

    model_version: str
    items: list[Ranked]
    note: str | None = None
    user_model_version: str | None = None  # the model that embedded the user; None: ranked as a newcomer
    recommendation_id: str = ""  # what feedback on this list names (dynrec.ranking.attribution)


@dataclass(frozen=True)
class SegmentDraw:
    """A new or light user's segment, drawn into their prior: the prior with it (`with_segment`),
    the segment's label, and its term alone, which says when an item is there for the segment."""

    label: str
    prior: PriorRanking
    term: np.ndarray
    weight: float


class SegmentDraws:
    """`SegmentDraw`s for users without enough events of their own, cached per catalogue, segment
    version, segment, attribute groups and weight (a fit and a prior do not change), so a request
    does not sort the catalogue. `weight` applies to users placed by their embedding,
    `weight_without_events` to those placed by their attributes alone."""

    def __init__(self, weight: float, weight_without_events: float | None = None):
        self.weight = weight
        self.weight_without_events = weight if weight_without_events is None else weight_without_events
        self._cache: dict[tuple, SegmentDraw] = {}

    def draw(self, catalog: Catalog, segmentation: Segmentation | None, user: UserView) -> SegmentDraw | None:
        """The user's segment drawn into their prior; None when they rank on their own state alone,
        before any segments, or at weight 0."""
        weight = self.weight_without_events if user.embedding is None else self.weight
        if not weight or segmentation is None or segmentation.k == 0:
            return None
        if user.embedding is not None and not blend_weight(user.history_length, catalog.config.cold_start):
            return None
        segment = segmentation.assign(user.embedding, user.attributes, user.model_version)
        known = tuple(catalog.prior.known(user.attributes))
        key = (id(catalog.prior), segmentation.version, segment, known, weight)
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) > 4096:  # old versions' entries
                self._cache.clear()
            prior = catalog.prior.ranking(user.attributes)
            term = segment_term(segment_shares(segmentation.basis(segment)[1], catalog.row, len(prior.scores)))
            cached = self._cache[key] = SegmentDraw(segmentation.profile(segment).label, with_segment(prior, term, weight),
                                                    term, weight)
        return cached


def matching_catalogue(user: UserView, catalogs: list[Catalog]) -> tuple[Catalog, UserView]:
    """The newest of `catalogs` (newest first) whose model also embedded the user, with the view
    holding that embedding, so no score mixes item vectors of one model with a user vector of
    another. With none in common (a replica started on a model the user's shard has not switched
    to yet) the newest catalogue and the view without an embedding: the user is ranked as a
    newcomer (prior, popularity) until the shard catches up. The interests come only under the
    model that made the embedding: ranked with the earlier one, the user is ranked without them."""
    embeddings = dict(user.earlier)
    if user.embedding is not None:
        embeddings[user.model_version] = user.embedding
    for catalog in catalogs:
        if catalog.model_version in embeddings:
            own = catalog.model_version == user.model_version
            return catalog, replace(user, embedding=embeddings[catalog.model_version], model_version=catalog.model_version, earlier={},
                                    interests=user.interests if own else None, interest_shares=user.interest_shares if own else None,
                                    reasons=user.reasons if own else None)
    return catalogs[0], replace(user, embedding=None, model_version=None, earlier={}, interests=None, interest_shares=None,
                                reasons=None)


def titled(catalog: Catalog, ranked: list[Ranked]) -> list[Ranked]:
    for r in ranked:
        r.title = catalog.item(r.item_id).title
    return ranked


def recommend(
    catalog: Catalog,
    user: UserView,
    k: int,
    filters: Filters,
    exclude_seen: bool,
    candidates: int,
    diversity: float,
    new_item_slots: int = 1,
    exploration: ExplorationSettings | None = None,
    rng: np.random.Generator | None = None,
    bandit: ClickBandit | None = None,
    segment: SegmentDraw | None = None,
) -> list[Ranked]:
    """Top-k for `user`; users without an embedding (unknown, or no events yet) get the prior of
    their attributes (what new users in their groups took to first, see dynrec.ranking.prior),
    with their `segment` drawn in when given (and for light users, blended with their own state).

    Up to `new_item_slots` per 10 results go to new items (added while serving, so without
    behaviour or a trained ID) whose content is closest to the user's recent history: they are
    served from content alone from the moment they are upserted. With `exploration`, a share of
    the slots goes to young items picked by `bandit`'s Thompson sampling (see dynrec.ranking.bandit),
    each taking a random slot of the list, flagged.
    """
    # hidden items are out of every index and skipped where the prior or popularity is read, so
    # they stay out of `exclude`: a request's cost must not grow with the number of hidden items
    exclude = set(filters.exclude_item_ids)
    if exclude_seen:
        exclude |= user.seen
    accept = filters.accepts(catalog)
    rng = rng if rng is not None else np.random.default_rng()
    explored: list[Ranked] = []
    if exploration is not None and bandit is not None:
        explored = explore(catalog, bandit, user, exploration_slots(k, exploration.weight, rng), exclude, accept, exploration, rng)
        exclude = exclude | {e.item_id for e in explored}
    k_main = k  # ranked in full: explored items then take some of its slots (bandit.place)
    if user.embedding is None:
        ranked = cold_start(catalog, user, k_main, exclude, accept, segment)
    else:
        wide = diversity > 0 or user.interests is not None
        ids, scores = retrieve(catalog, user, max(k_main, candidates) if wide else k_main, exclude, accept, segment)
        if diversity > 0 and len(ids) > k_main:
            ids, scores = mmr(catalog, ids, scores, k_main, diversity)
        ids, scores = ids[:k_main], scores[:k_main]
        ranked = [Ranked(i, float(s), r) for i, s, r in zip(ids, scores, reasons_for(catalog, ids, user))]
        slots = new_item_slots * k // 10
        if slots and len(catalog.fresh_index):
            fresh = [f for f in new_items_for(catalog, user, slots, exclude, accept) if f.item_id not in set(ids)]
            ranked = ranked[: k_main - len(fresh)] + fresh
    return titled(catalog, place(ranked[:k_main], explored, k, rng))


def retrieve(catalog: Catalog, user: UserView, k: int, exclude: set[str], accept,
             segment: SegmentDraw | None = None) -> tuple[list[str], np.ndarray]:
    """The user's top k from the index (with the user's long-term interests, when the view carries
    them: see `with_interests`); for a user with only a few events, blended with the prior (with
    their `segment` drawn in, when given); and, where the model's training fitted one, with the
    item-item term of the user's seen items (dynrec.ranking.item_item).

    The scores are standardised (the model's against a fixed sample of items, the prior's and
    the item-item term's over every item) and added, the prior's at `blend_weight`; the candidates
    are the model's top and the prior's and the term's tops (`serving.candidates` each), so the
    catalogue is not scored item by item.
    """
    weight = blend_weight(user.history_length, catalog.config.cold_start)
    term = catalog.item_item.for_user(user.seen) if catalog.item_item is not None else None
    if not weight and term is None:
        if user.interests is not None:
            return with_interests(catalog, user, k, exclude, accept)
        return catalog.index.search(user.embedding, k, exclude, accept)
    pool = max(k, catalog.config.serving.candidates)

    def visible_and_accepted(item_id: str) -> bool:
        return catalog.visible(item_id) and (accept is None or accept(item_id))

    allowed = visible_and_accepted if accept is not None or catalog.hidden else None  # None: every trained item is

    if user.interests is not None and not weight:
        ids, scores = with_interests(catalog, user, k, exclude, accept)
        taken = set(ids)
        extra = [i for i in term.top(pool, exclude, allowed) if i not in taken]
        ids = ids + extra
        scores = np.concatenate([scores, interest_scores(catalog, user, extra)]) + term.of(ids)
    else:
        # every item no history item speaks for takes the same term: of those, the model's top k is all that can rank
        ids, model_scores = catalog.index.search(user.embedding, pool if weight else k, exclude, accept)
        model = dict(zip(ids, model_scores.tolist()))
        wanted: list[str] = []
        if weight:
            prior = segment.prior if segment is not None else catalog.prior.ranking(user.attributes)
            wanted += [catalog.ids[row] for row in prior_top(catalog, prior.order, pool, exclude, accept)]
        if term is not None:
            wanted += term.top(pool, exclude, allowed)
        missing = list(dict.fromkeys(i for i in wanted if i not in model))
        if missing:
            model.update(zip(missing, (catalog.vectors(missing) @ user.embedding).tolist()))
        ids = list(model)
        own, reference = np.array([model[i] for i in ids]), catalog.score_sample @ user.embedding
        if weight:
            rows = np.array([catalog.row[i] for i in ids], dtype=np.int64)  # typed: filters may leave none
            known = rows < len(prior.scores)  # items added while serving have no prior
            prior_scores = np.zeros(len(ids))
            prior_scores[known] = prior.standardised[rows[known]]
            scores = blended(own, reference, prior_scores, user.history_length, catalog.config.cold_start)
        else:
            scores = standardise(own, reference)
        if term is not None:
            scores = scores + term.of(ids)
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[o] for o in order], scores[order]


def with_interests(catalog: Catalog, user: UserView, k: int, exclude: set[str], accept) -> tuple[list[str], np.ndarray]:
    """k candidates ranked by both of the user's states: the user embedding's top k - r, and r
    more retrieved along the long-term interests, each its share of them (r is
    `interests.candidate_share` of k), scored by `interest_scores`."""
    settings = catalog.config.interests
    reserved = round(k * settings.candidate_share)
    ids, _ = catalog.index.search(user.embedding, k - reserved, exclude, accept)
    taken = exclude | set(ids)
    for direction, quota in zip(user.interests, quotas(reserved, user.interest_shares)):
        if quota:
            found, _ = catalog.index.search(direction, int(quota), taken, accept)
            ids += found
            taken.update(found)
    if not ids:
        return [], np.zeros(0)
    scores = interest_scores(catalog, user, ids)
    order = np.argsort(-scores, kind="stable")
    return [ids[o] for o in order], scores[order]


def interest_scores(catalog: Catalog, user: UserView, ids: list[str]) -> np.ndarray:
    """Each item's score under both of the user's states: the user embedding's standardised score
    plus `interests.weight` times its best interest's, that interest's standardised score plus the
    log of its share, so a small interest must match better to count as much."""
    if not ids:
        return np.zeros(0)
    vectors = catalog.vectors(ids)
    by_interest = np.stack([standardise(vectors @ d, catalog.score_sample @ d) for d in user.interests], axis=1)
    return (standardise(vectors @ user.embedding, catalog.score_sample @ user.embedding)
            + catalog.config.interests.weight * (by_interest + np.log(user.interest_shares)).max(axis=1))


def quotas(total: int, shares: np.ndarray) -> np.ndarray:
    """`total` split by `shares` (summing to 1), largest remainder first: 10 by (0.5, 0.3, 0.2) is 5, 3, 2."""
    exact = total * np.asarray(shares, dtype=np.float64)
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]] += 1
    return counts


def prior_top(catalog: Catalog, order: np.ndarray, k: int, exclude: set[str], accept) -> list[int]:
    """The first k allowed rows of the prior's `order` (best first); hidden items are never allowed."""
    rows: list[int] = []
    for row in order:
        item_id = catalog.ids[row]
        if item_id not in exclude and item_id not in catalog.hidden and (accept is None or accept(item_id)):
            rows.append(int(row))
            if len(rows) == k:
                break
    return rows


def cold_start(catalog: Catalog, user: UserView, k: int, exclude: set[str], accept,
               segment: SegmentDraw | None = None) -> list[Ranked]:
    """A user without events: the best of their attribute prior (see dynrec.ranking.prior), with
    their `segment` drawn in when given, then what is popular now among items the prior does not
    know (those added while serving). An item is "popular with <segment>" when the segment's pull
    on it outweighs their attribute groups'."""
    groups = catalog.prior.ranking(user.attributes)
    prior = segment.prior if segment is not None else groups
    reason = sentence(f"popular with {catalog.prior.label(user.attributes)}")

    def why(row: int) -> str:
        if segment is not None and segment.weight * segment.term[row] >= groups.standardised[row]:
            return sentence(f"popular with {segment.label}")
        return reason

    picked = [Ranked(catalog.ids[row], float(prior.scores[row]), why(row)) for row in prior_top(catalog, prior.order, k, exclude, accept)]
    exclude = exclude | {p.item_id for p in picked}
    return picked + [Ranked(i, 0.0, "Popular right now") for i in catalog.popular(exclude, k - len(picked), accept)]


def explore(
    catalog: Catalog, bandit: ClickBandit, user: UserView, slots: int, exclude: set[str], accept, settings: ExplorationSettings, rng
) -> list[Ranked]:
    """Up to `slots` unsettled items younger than `settings.max_age_days`: of the `pool` most
    relevant to the user (all of them for a user without an embedding), those with the highest
    draws from the bandit's posteriors, its content fit made over every young item (see
    dynrec.ranking.bandit)."""
    if slots <= 0:
        return []
    everyone = catalog.created_since(time.time() - settings.max_age_days * 86400)
    young = [i for i in everyone if i not in exclude and (accept is None or accept(i))]
    if not young:
        return []
    vectors = catalog.vectors(young)
    if user.embedding is not None and len(young) > settings.pool:
        nearest = np.argsort(-(vectors @ user.embedding), kind="stable")[: settings.pool]
        young, vectors = [young[r] for r in nearest], vectors[nearest]
    rows, draws = bandit.choose(young, vectors, slots, bandit.fit(everyone, catalog.vectors), rng)
    picked = [young[r] for r in rows]
    reasons = reasons_for(catalog, picked, user)
    return [Ranked(i, float(d), exploring(bandit, i, r), explored=True) for i, d, r in zip(picked, draws, reasons)]


def counted_impressions(catalog: Catalog, bandit: ClickBandit, ranked: list[Ranked], max_age_days: float) -> list[bool]:
    """Which items of a served list the service counts an impression of: every young item the
    bandit has not settled, whether it was explored or placed by its relevance. Clicks on an item
    count only up to its impressions, so a young item shown for its relevance and clicked would
    otherwise add no evidence, and the bandit would keep exploring it."""
    if not ranked:
        return []
    cutoff = time.time() - max_age_days * 86400  # as `Catalog.created_since` draws the explorable items
    young = [r.item_id in catalog.row and catalog.behaviour.created_at[catalog.row[r.item_id]] >= cutoff for r in ranked]
    unsettled = bandit.unsettled([r.item_id for r in ranked])
    return [bool(r.explored or (new and open_)) for r, new, open_ in zip(ranked, young, unsettled)]


def exploring(bandit: ClickBandit, item_id: str, reason: str) -> str:
    """The flag on an explored item's reason: how much the bandit has seen of it so far."""
    shown, _ = bandit.feedback.shown_and_clicked(item_id)
    reason = reason.removeprefix("New item, ")
    return f"Exploring a new item (shown {shown} times so far): {reason[:1].lower()}{reason[1:]}"


def new_items_for(catalog: Catalog, user: UserView, k: int, exclude: set[str], accept) -> list[Ranked]:
    """New items closest in content to the user's recent history (the mean of its content vectors)."""
    recent = [h[0] for h in user.recent if h[0] in catalog]
    if not recent:
        return []
    profile = catalog.content_vectors(recent).mean(axis=0)
    profile /= max(float(np.linalg.norm(profile)), 1e-12)
    ids, scores = catalog.fresh_index.search(profile, k, exclude, accept)
    return [Ranked(i, float(s), r) for i, s, r in zip(ids, scores, reasons_for(catalog, ids, user))]


def mmr(catalog: Catalog, ids: list[str], scores: np.ndarray, k: int, diversity: float) -> tuple[list[str], np.ndarray]:
    """Maximal marginal relevance: each pick trades relevance against similarity to earlier picks."""
    vectors = catalog.vectors(ids)
    chosen: list[int] = []
    closest = np.full(len(ids), -np.inf)
    for _ in range(k):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = (1 - diversity) * scores - diversity * penalty
        value[chosen] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        closest = np.maximum(closest, vectors @ vectors[pick])
    return [ids[c] for c in chosen], scores[chosen]


def liked(catalog: Catalog, entry: tuple[str, str, int, float]) -> bool:
    """A history entry that says the user liked the item: any interaction but a rating at or below
    the middle of the scale (`model.value_center`): a 2★ is never cited as a reason."""
    return entry[1] != "rating" or entry[3] > catalog.config.model.value_center


def leave_one_out_inputs(catalog: Catalog, window: list[tuple[str, str, int, float]], positions: list[int]) -> tuple:
    """The user graph's inputs (`ModelRuntime.embed_users`) for `window` (oldest first) in row 0,
    then for the window without its entry at each of `positions`, each row encoded as a window of
    its own (dynrec.users.incremental.event_features). A row without an entry is one shorter; its last
    column repeats an event, which the causal graph never lets an earlier position see. The window's
    features are encoded once and gathered per row; only the gaps are taken again, from the times,
    since a removal joins the gaps on either side of it."""
    n = len(window)
    steps = np.arange(n)
    rows = np.vstack([steps, np.minimum(steps + (steps >= np.asarray(positions)[:, None]), n - 1)])
    codes, _, values = event_features(window, catalog.config.model.event_types)
    times = np.array([e[2] for e in window], dtype=np.float64)[rows]
    gaps = np.zeros_like(times)
    np.maximum(times[:, 1:] - times[:, :-1], 0.0, out=gaps[:, 1:])
    codes, values = codes[rows], values[rows]
    lengths = np.array([n] + [n - 1] * len(positions))
    return catalog.vectors([e[0] for e in window])[rows], codes, gaps, values, lengths


def citable(catalog: Catalog, window: list[tuple[str, str, int, float]]) -> list[int]:
    """The positions in `window` (oldest first) a reason may cite: the liked events among the
    newest `serving.reason_history`."""
    start = max(len(window) - catalog.config.serving.reason_history, 0)
    return [p for p in range(start, len(window)) if liked(catalog, window[p])]


def reason_bases(catalog: Catalog, windows: list[list[tuple[str, str, int, float]]],
                 positions: list[list[int]]) -> list[ReasonBasis]:
    """For each window (at least two events) its ReasonBasis for the entries at its `positions`:
    every window's rows right-padded into one batch of the user graph."""
    parts = [leave_one_out_inputs(catalog, w, p) for w, p in zip(windows, positions)]
    width = max(part[0].shape[1] for part in parts)

    def stacked(index: int) -> np.ndarray:
        return np.concatenate([np.pad(part[index], [(0, 0), (0, width - part[index].shape[1])] + [(0, 0)] * (part[index].ndim - 2))
                               for part in parts])

    embeddings = catalog.runtime.embed_users(*(stacked(i) for i in range(4)), np.concatenate([part[4] for part in parts]))
    bases, row = [], 0
    for window, chosen in zip(windows, positions):
        bases.append(ReasonBasis(catalog.model_version, [window[p] for p in chosen], embeddings[row], embeddings[row + 1 : row + 1 + len(chosen)]))
        row += 1 + len(chosen)
    return bases


def explained(catalog: Catalog, windows: list[list[tuple[str, str, int, float]]]) -> list[ReasonBasis | None]:
    """For each reason window (as a UserView carries it) its ReasonBasis over every event a reason
    may cite, all in one batch; None where there is nothing to weigh (`cited` needs no embedding then)."""
    kept = [[e for e in window if e[0] in catalog] for window in windows]
    positions = [citable(catalog, window) for window in kept]
    weighed = [i for i, (window, chosen) in enumerate(zip(kept, positions)) if len(window) >= 2 and chosen]
    bases: list[ReasonBasis | None] = [None] * len(windows)
    if weighed:
        for i, basis in zip(weighed, reason_bases(catalog, [kept[i] for i in weighed], [positions[i] for i in weighed])):
            bases[i] = basis
    return bases


def cited(catalog: Catalog, item_ids: list[str], user: UserView) -> list[tuple[str, str, int, float] | None]:
    """For each item, the liked recent history entry whose removal lowers its score most: the user
    as embedded from `user.window` (the newest `serving.reason_window` events) against the same
    window without each candidate. The candidates are the liked entries among the newest
    `serving.reason_history`, at most `serving.reason_candidates` of them, those closest to any of
    the items. An entry is cited only when its removal lowers the item's score by at least
    `serving.reason_min_drop` standard deviations of the user's scores over the catalogue (its
    score sample); None otherwise. A window of one liked event is always cited: the whole
    history is that one item.

    The re-embeddings come from the view (`user.reasons`, which the user's shard makes as the
    window changes, for every candidate) when they were made for this window and model; else they
    are made here, in one batch, for the chosen candidates only."""
    serving = catalog.config.serving
    window = [e for e in user.window if e[0] in catalog]
    positions = citable(catalog, window)
    if not item_ids or not positions:
        return [None] * len(item_ids)
    if len(window) == 1:
        return [window[0]] * len(item_ids)
    vectors = catalog.vectors(item_ids)
    chosen = np.arange(len(positions))
    if len(positions) > serving.reason_candidates:
        closeness = (vectors @ catalog.vectors([window[p][0] for p in positions]).T).max(axis=0)
        chosen = np.sort(np.argsort(-closeness, kind="stable")[: serving.reason_candidates])
    basis = user.reasons
    if basis is not None and basis.model_version == catalog.model_version and basis.entries == [window[p] for p in positions]:
        embedding, without = basis.embedding, basis.without[chosen]
    else:
        basis = reason_bases(catalog, [window], [[positions[c] for c in chosen]])[0]
        embedding, without = basis.embedding, basis.without
    drops = (embedding - without) @ vectors.T  # (candidates, items): each removal's fall in each score
    floor = serving.reason_min_drop * float(np.std(catalog.score_sample @ embedding))
    best = drops.argmax(axis=0)
    return [window[positions[chosen[b]]] if drops[b, i] > 0 and drops[b, i] >= floor else None for i, b in enumerate(best)]


def co_chosen(catalog: Catalog, item_ids: list[str], user: UserView) -> list[tuple[str, str, int, float] | None]:
    """For each item the item-item term put forward (its part of the score positive and larger
    than the model's standardised score), the liked entry of the user's recent history with the
    largest kept EASE weight to it (dynrec.ranking.item_item); None for every other item."""
    found: list[tuple[str, str, int, float] | None] = [None] * len(item_ids)
    term = catalog.item_item.for_user(user.seen) if catalog.item_item is not None and user.embedding is not None else None
    if term is None or not item_ids:
        return found
    known = catalog.item_item.position
    newest = {e[0]: e for e in reversed(user.recent)}  # `recent` is newest first: the newest entry per item wins
    had = [e for e in newest.values() if e[0] in known and e[0] in catalog and liked(catalog, e)]
    own = standardise(catalog.vectors(item_ids) @ user.embedding, catalog.score_sample @ user.embedding)
    parts = term.of(item_ids)
    forward = [j for j, item_id in enumerate(item_ids) if item_id in known and parts[j] > max(own[j], 0.0)]
    if not had or not forward:
        return found
    weights = catalog.item_item.between([e[0] for e in had], [item_ids[j] for j in forward])
    for column, j in enumerate(forward):
        best = int(np.argmax(weights[:, column]))
        if weights[best, column] > 0:
            found[j] = had[best]
    return found


def reasons_for(catalog: Catalog, item_ids: list[str], user: UserView) -> list[str]:
    """One reason per item: "often chosen with <a history item>" where the item-item term put the
    item forward (`co_chosen`), else "because of <the history item `cited` for it>", or, when no
    single item stands out, that it fits the history as a whole; flagged when the item is new."""
    reasons = []
    for item_id, entry, together in zip(item_ids, cited(catalog, item_ids, user), co_chosen(catalog, item_ids, user)):
        prefix = "new item, " if catalog.is_new(item_id) else ""
        if together is not None:
            reasons.append(sentence(f"{prefix}often chosen with {what_you_did(catalog, together)}"))
        elif entry is None:
            reasons.append(sentence(f"{prefix}fits your history as a whole" if user.recent else f"{prefix}matches your interests"))
        else:
            reasons.append(sentence(f"{prefix}because of {what_you_did(catalog, entry)}"))
    return reasons


def what_you_did(catalog: Catalog, entry: tuple[str, str, int, float]) -> str:
    """A history entry as a reason cites it: “<title>”, which you rated 4★ (or viewed, bought...)."""
    item, event_type, _, value = entry
    detail = f" {value:g}★" if event_type == "rating" else ""
    return f"“{catalog.item(item).title}”, which you {VERBS.get(event_type, 'interacted with')}{detail}"


def similar_items(catalog: Catalog, item_id: str, k: int, filters: Filters) -> list[Ranked]:
    """Items closest in content to one item (the item itself and hidden items excluded)."""
    exclude = {item_id} | set(filters.exclude_item_ids)  # hidden items are out of the content index
    ids, scores = catalog.content_index.search(catalog.content_vector(item_id), k, exclude, filters.accepts(catalog))
    title = catalog.item(item_id).title
    return titled(catalog, [Ranked(i, float(s), sentence(f"similar to “{title}”")) for i, s in zip(ids, scores)])


def for_segment(catalog: Catalog, centroid: np.ndarray, popular: dict[str, float], k: int, filters: Filters,
                candidates: int, popularity_weight: float = 0.5) -> list[Ranked]:
    """Top-k for a segment: the items closest to its centroid (retrieved like a user's) and the
    items most common among its members, scored together as
    `(1 - popularity_weight) * relevance + popularity_weight * popularity`, both standardised (the
    relevance against the catalogue's score sample, the popularity, log of the share of members,
    over the candidates). Each reason names the larger of the two weighted terms, what drove the
    item's score. Filters and `exclude_item_ids` apply as for users."""
    exclude, accept = set(filters.exclude_item_ids), filters.accepts(catalog)
    retrieved, _ = catalog.index.search(centroid, candidates, exclude, accept)
    common = [i for i in popular if catalog.visible(i) and i not in exclude and (accept is None or accept(i))]
    pooled = list(dict.fromkeys(retrieved + common))
    if not pooled:
        return []
    relevance = catalog.vectors(pooled) @ centroid
    sample = catalog.score_sample @ centroid
    relevance = (relevance - sample.mean()) / max(float(sample.std()), 1e-6)
    share = np.array([popular.get(i, 0.0) for i in pooled])
    log_share = np.log(share + 1e-3)
    popularity = (log_share - log_share.mean()) / max(float(log_share.std()), 1e-6)
    from_relevance, from_popularity = (1 - popularity_weight) * relevance, popularity_weight * popularity
    scores = from_relevance + from_popularity
    order = np.argsort(-scores, kind="stable")[:k]
    ranked = []
    for o in order:
        item_id = pooled[o]
        reason = (f"{100 * share[o]:.0f}% of this segment's members chose it" if share[o] >= 0.01 and from_popularity[o] >= from_relevance[o]
                  else "close to this segment's taste")
        ranked.append(Ranked(item_id, float(scores[o]), sentence(reason)))
    return titled(catalog, ranked)


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
