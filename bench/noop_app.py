"""The serving benchmark's floor: a Serve app of the same depth as dynrec's that does no work.

Ingress (FastAPI) -> user lookup -> ranking, as in the real recommendation path, each hop
answering at once, so the real app's latency is judged against Serve's own overhead.
"""

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

api = FastAPI()


# the same max_ongoing_requests as the real app's deployments, so queueing is judged alike, and the
# same kind of method (a coroutine, or a plain method that Serve runs on a worker thread) per call
@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class NoopUsers:
    async def view(self, user_id: str) -> dict:
        return {"embedding": None, "seen": set(), "recent": []}

    def apply(self, events: list) -> list:
        return []


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class NoopRanker:
    def recommend(self, user_id: str, view: dict) -> dict:
        return {"recommendation_id": "noop", "user_id": user_id, "model_version": "noop", "items": []}


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=200)
@serve.ingress(api)
class NoopIngress:
    def __init__(self, users: DeploymentHandle, ranker: DeploymentHandle):
        self.users, self.ranker = users, ranker

    @api.post("/v1/recommendations")
    async def recommendations(self, body: dict) -> dict:
        view = await self.users.view.remote(body.get("user_id", ""))
        return await self.ranker.recommend.remote(body.get("user_id", ""), view)

    @api.post("/v1/events")
    async def events(self, body: dict) -> dict:
        rejected = await self.users.apply.remote(body.get("events", []))
        return {"accepted": len(body.get("events", [])) - len(rejected), "rejected": rejected}

    @api.put("/v1/items/{item_id}")
    async def put_item(self, item_id: str, body: dict) -> dict:
        """The item upsert's floor: the same body read and parsed (a poster in base64), one hop."""
        await self.users.apply.remote([])
        return {"item_id": item_id, "title": body.get("title", ""), "new": True}


app = NoopIngress.bind(NoopUsers.bind(), NoopRanker.bind())
