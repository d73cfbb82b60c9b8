"""dynrec.client against the real Serve app: every answer parses into its response model."""

import asyncio

import pytest

from dynrec.api.schemas import ItemOut, RecommendationResponse
from dynrec.client import ApiError, AsyncClient, Client
from tests.deployments.conftest import API_KEY


def test_the_client_adds_an_item_sends_events_and_recommends(service):
    stored = service.put_item("client-item", "Client Wars (2026)", text="Rebels and an empire, in space.", categories=["Sci-Fi"])
    assert isinstance(stored, ItemOut) and stored.item_id == "client-item" and stored.new is True
    assert service.get_item("client-item").categories == ["Sci-Fi"]

    events = [{"user_id": "client-user", "item_id": item, "event_type": "view"} for item in ("50", "client-item", "no-such-item", "172")]
    with Client(service.base, API_KEY, max_events_per_request=2) as small_batches:
        answer = small_batches.send_events(events)  # the rejected event is the second request's first
    assert answer.accepted == 3 and [r.index for r in answer.rejected] == [2]

    ranked = service.recommendations("client-user", 5, exploration={"weight": 0})
    assert isinstance(ranked, RecommendationResponse) and len(ranked.items) == 5
    assert not {"50", "client-item", "172"} & {i.item_id for i in ranked.items}  # seen items are excluded
    user = service.get_user("client-user")
    assert user["known"] is True and [r["item_id"] for r in user["recent"]] == ["172", "client-item", "50"]
    assert len(service.similar("client-item", 7).items) == 7

    batch = service.put_items([{"item_id": "client-batch-1", "title": "One"}, {"item_id": "client-batch-2", "title": "Two",
                                                                               "image": "%%%"}])
    assert batch.accepted == 1 and [r.index for r in batch.rejected] == [1]
    assert service.get_item("client-batch-1").new is True

    with pytest.raises(ApiError) as raised:
        service.get_item("never-stored")
    assert raised.value.status == 404 and "never-stored" in raised.value.error


def test_the_async_client_reads_the_same_service(service):
    async def main():
        async with AsyncClient(service.base, timeout_s=60) as client:
            return await asyncio.gather(client.healthz(), client.recommendations("3", 4), client.segments())

    health, ranked, segments = asyncio.run(main())
    assert health["status"] == "ok" and len(ranked.items) == 4 and segments.segments
