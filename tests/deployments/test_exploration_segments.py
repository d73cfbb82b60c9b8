"""Over HTTP: the attribute prior for new users, exploration with click feedback, and segments."""

from tests.deployments.test_api import ids, recommend


def test_a_new_user_with_attributes_gets_their_groups_prior_then_their_own_state(service):
    off = {"weight": 0}  # no exploration slots, so every result comes from the prior
    women = recommend(service, "new-woman", num_results=10, context={"gender": "F", "age": "25"}, exploration=off)
    men = recommend(service, "new-man", num_results=10, context={"gender": "M", "age": "25"}, exploration=off)
    # each item is there for the attribute groups, or for the segment the attributes place her in
    segments = {f"Popular with {s['label']}" for s in service.get("/v1/segments").json()["segments"]}
    reasons = [item["reason"] for item in women["items"]]
    assert all(r.startswith("Popular with new users who are women aged 25") or r in segments for r in reasons)
    assert any(r.startswith("Popular with new users who are women aged 25") for r in reasons)
    assert ids(women) != ids(men)
    service.post("/v1/events", json={"events": [{"user_id": "new-woman", "item_id": "50", "event_type": "view"}]})
    after = recommend(service, "new-woman", num_results=10, context={"gender": "F", "age": "25"})
    assert ids(after) != ids(women) and "50" not in ids(after)


def test_exploration_flags_young_items_and_learns_from_attributed_clicks(service):
    # a category of its own, so the young items other tests put (the contract fuzzer puts dozens)
    # cannot take the explored slots: the filter applies to exploration as to the rest
    only = {"include_categories": ["Exploration-Test"]}
    response = service.put("/v1/items/explore-me", json={"title": "A brand new space adventure",
                                                         "categories": ["Sci-Fi", "Exploration-Test"]})
    assert response.status_code == 200, response.text
    on = recommend(service, "31", num_results=10, exploration={"weight": 1.0}, filters=only)
    explored = [item for item in on["items"] if item["explored"]]
    assert explored and all(item["reason"].startswith("Exploring") for item in explored)
    assert "explore-me" in [item["item_id"] for item in explored]
    assert "(shown 0 times so far)" in next(i["reason"] for i in explored if i["item_id"] == "explore-me")
    off = recommend(service, "31", num_results=10, exploration={"weight": 0}, filters=only)
    assert not any(item["explored"] for item in off["items"])
    feedback = [{"user_id": "31", "item_id": "explore-me", "event_type": t, "recommendation_id": on["recommendation_id"]}
                for t in ("impression", "click")]
    # the click is attributed; the client's impression is not: the service counted the one it served
    assert service.post("/v1/events", json={"events": feedback}).json() == {"accepted": 2, "rejected": [], "attributed": [1]}
    # feedback naming a list the service never issued, or an item that list did not hold, is kept unattributed
    made_up = {"user_id": "31", "item_id": "explore-me", "event_type": "click", "recommendation_id": "made-up"}
    elsewhere = next(str(i) for i in range(1, 100) if str(i) not in {item["item_id"] for item in on["items"]})
    not_in_it = {**made_up, "item_id": elsewhere, "recommendation_id": on["recommendation_id"]}
    assert service.post("/v1/events", json={"events": [made_up, not_in_it]}).json() == {"accepted": 2, "rejected": [],
                                                                                        "attributed": []}
    # the bandit learned from the attributed feedback: the service counted each list that showed the
    # unsettled young item, explored or placed by its relevance (the list without exploration too)
    showings = sum("explore-me" in [item["item_id"] for item in listed["items"]] for listed in (off, on))
    again = recommend(service, "32", num_results=10, exploration={"weight": 1.0}, filters=only)
    assert f"(shown {showings} times so far)" in next(i["reason"] for i in again["items"] if i["item_id"] == "explore-me")
    bad = service.post("/v1/recommendations", json={"user_id": "31", "exploration": {"weight": 2}})
    assert bad.status_code == 422 and "weight" in bad.text


def test_segments_are_listed_explained_assigned_and_recomputed(service):
    listed = service.get("/v1/segments").json()
    assert listed["k"] >= 2 and len(listed["segments"]) == listed["k"]
    assert sum(s["size"] for s in listed["segments"]) > 500
    first = service.get("/v1/segments/0").json()
    assert first["label"] and first["top_items"] and first["version"] == listed["version"]
    assert service.get("/v1/segments/999").status_code == 404
    user = service.get("/v1/users/5").json()
    assert 0 <= user["segment"]["segment_id"] < listed["k"] and user["segment"]["label"]
    recomputed = service.post("/v1/segments/recompute").json()
    assert recomputed["version"] == listed["version"] + 1 and recomputed["segments"]
    assert service.get("/v1/segments").json()["version"] == recomputed["version"]


def test_a_segment_gets_recommendations_with_filters_and_exclusions(service):
    listed = service.get("/v1/segments").json()
    answer = service.get("/v1/segments/0/recommendations", params={"num_results": 8})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["segment_id"] == 0 and body["label"] == listed["segments"][0]["label"] and len(body["items"]) == 8
    assert all(item["title"] and item["reason"] for item in body["items"])
    first = body["items"][0]
    genre = service.get(f"/v1/items/{first['item_id']}").json()["categories"][0]
    filtered = service.get("/v1/segments/0/recommendations",
                           params={"num_results": 8, "exclude_categories": [genre], "exclude_item_ids": [body["items"][1]["item_id"]]}).json()
    assert len(filtered["items"]) == 8 and body["items"][1]["item_id"] not in {i["item_id"] for i in filtered["items"]}
    for item in filtered["items"]:
        assert genre not in service.get(f"/v1/items/{item['item_id']}").json()["categories"]
    missing = service.get("/v1/segments/999/recommendations")
    assert missing.status_code == 404 and missing.json()["error"]
    assert service.get("/v1/segments/0/recommendations", params={"num_results": 0}).status_code == 422
