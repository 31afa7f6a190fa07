"""``/healthz`` (the process answers), ``/readyz`` (Redis answers) and ``/metrics`` (Prometheus)."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.api.metrics import ApiMetrics
from worker.api.problems import ApiProblem
from worker.api.routes.common import State, errors
from worker.api.schemas import Health

__all__ = ["router"]


def router(metrics: ApiMetrics) -> APIRouter:
    """The operations routes."""
    routes = APIRouter(tags=["operations"])

    @routes.get("/healthz")
    async def healthz() -> Health:
        """Alive: the process answers HTTP (not tied to Redis, so an outage there restarts nothing)."""
        return Health(status="ok")

    @routes.get("/readyz", responses=errors(503))
    async def readyz(state: State) -> Health:
        """Ready: the model is loaded and Redis answers a PING."""
        if not await state.ready():
            raise ApiProblem(503, "redis_unavailable", "not ready: Redis does not answer a PING; check "
                             "TAGGER_REDIS_URL and that Redis is running", {"Retry-After": "5"})
        return Health(status="ready")

    @routes.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        """The API's metrics in Prometheus's text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return routes
