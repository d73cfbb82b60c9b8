"""Attributed feedback per item: impressions and clicks that carry the `recommendation_id` they
answer (checked against the stored recommendation, which also gives the item's position). The
catalogue keeps the counts, like the rest of an item's behaviour, and compacts them with it;
ranking's bandit (dynrec.ranking.bandit) turns them into exploration decisions.

Position-aware: an impression counts by the chance that a person looked at that slot at all, taken
as 1 / log2(position + 2) (the position discount of DCG: 1 for the first slot, 0.63 for the second,
0.29 for the tenth). An item shown low and not clicked is then not judged as harshly as one
ignored at the top; a click counts whole wherever it was."""

from __future__ import annotations

import math
from collections import Counter

FEEDBACK_TYPES = ("impression", "click")


def examined(position: int | None) -> float:
    """The chance a slot is looked at (module docstring); an unplaced impression counts whole."""
    return 1.0 if position is None else 1.0 / math.log2(position + 2)


class FeedbackCounts:
    version = 0  # counts the records: what the bandit's content fit is kept against (0 in a snapshot from before it)

    def __init__(self):
        self.impressions: Counter[str] = Counter()  # times shown
        self.looked_at: Counter[str] = Counter()  # the same, each weighted by `examined(position)`
        self.clicks: Counter[str] = Counter()

    def record(self, item_id: str, event_type: str, position: int | None = None) -> None:
        """Count one attributed impression or click (other event types are ignored)."""
        if event_type == "impression":
            self.impressions[item_id] += 1
            self.looked_at[item_id] += examined(position)
        elif event_type == "click":
            self.clicks[item_id] += 1
        else:
            return
        self.version += 1

    def shown_and_clicked(self, item_id: str) -> tuple[int, int]:
        """(times shown, clicks), as counted. A click implies an impression, even when the client sent none."""
        clicks = self.clicks.get(item_id, 0)
        return max(self.impressions.get(item_id, 0), clicks), clicks

    def evidence(self, item_id: str) -> tuple[float, int]:
        """(times looked at: impressions weighted by position, clicks): what the bandit's posterior counts."""
        clicks = self.clicks.get(item_id, 0)
        return max(self.looked_at.get(item_id, 0.0), clicks), clicks
