"""The ASGI application: routes, error handlers, limits, metrics, CORS and the review page.

Requests pass, outermost first: metrics (every request counted and timed) → body limit → CORS (only when
``TAGGER_API_CORS_ORIGINS`` names origins) → FastAPI's routing and the problem+json error handlers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from worker.api.limits import BodyLimit
from worker.api.metrics import ApiMetrics, Measured, ModelInfo
from worker.api.openapi import install_openapi
from worker.api.page import install_page
from worker.api.problems import install_handlers
from worker.api.routes import feedback, models, ops, tags
from worker.api.state import ApiState
from worker.settings import Settings

__all__ = ["application", "create_app"]

_DESCRIPTION = """Look up the tags the streaming worker stored, tag new texts with the live model, send
corrections to the learner, and see the model versions and the learner's progress.

Errors are RFC 9457 problem details (`application/problem+json`). Writes (`POST /v1/corrections`) need
`Authorization: Bearer <token>`. The review page is at `/`."""


def application(settings: Settings) -> FastAPI:
    """The app's routes, handlers and middleware, without clients: enough to publish its OpenAPI document."""
    app = FastAPI(title="rankae-tagger API", version="1", description=_DESCRIPTION, redoc_url=None,
                  generate_unique_id_function=_operation_id)
    metrics = ApiMetrics()
    app.state.metrics = metrics
    for router in (tags.router(settings.api), models.router(settings, metrics), feedback.router(),
                   ops.router(metrics)):
        app.include_router(router)
    install_handlers(app)
    install_openapi(app)
    install_page(app)
    origins = settings.api.cors_origins()
    if origins:  # off unless configured: the page is served from the API's own origin and needs no CORS
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(BodyLimit, max_bytes=settings.api.api_max_body_bytes)
    app.add_middleware(Measured, metrics=metrics)
    return app


def _operation_id(route: APIRoute) -> str:
    """The OpenAPI operationId: the route function's name (get_tags, lookup, suggest ...)."""
    return route.name


def create_app(settings: Settings, state: ApiState) -> FastAPI:
    """The served app: :func:`application` bound to ``state`` (closed when the server shuts down)."""
    app = application(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await state.close()

    app.router.lifespan_context = lifespan
    app.state.api = state
    app.state.metrics.registry.register(ModelInfo(lambda: state.watcher.served))
    return app
