"""Attributed feedback per item: impressions and clicks that carry the `recommendation_id` they
answer. The catalogue keeps the counts, like the rest of an item's behaviour, and compacts them
with it; ranking's bandit (dynrec.ranking.bandit) turns them into exploration decisions."""

from __future__ import annotations

from collections import Counter

FEEDBACK_TYPES = ("impression", "click")


class FeedbackCounts:
    def __init__(self):
        self.impressions: Counter[str] = Counter()
        self.clicks: Counter[str] = Counter()

    def record(self, item_id: str, event_type: str) -> None:
        """Count one attributed impression or click (other event types are ignored)."""
        if event_type == "impression":
            self.impressions[item_id] += 1
        elif event_type == "click":
            self.clicks[item_id] += 1

    def shown_and_clicked(self, item_id: str) -> tuple[int, int]:
        """(times shown, clicks). A click implies an impression, even when the client sent none."""
        clicks = self.clicks.get(item_id, 0)
        return max(self.impressions.get(item_id, 0), clicks), clicks
