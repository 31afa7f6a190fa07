"""What every route module shares: the state dependency and the documented error responses."""

from typing import Annotated, Any

from fastapi import Depends, Request

from worker.api.state import ApiState

__all__ = ["State", "errors"]

_MEANING = {
    400: "the body is not JSON in UTF-8",
    401: "the API token is missing or wrong",
    403: "writes are disabled: the server has no API token",
    404: "no such document (or route)",
    413: "the request body is over TAGGER_API_MAX_BODY_BYTES",
    422: "the request is not valid (errors lists each field), or the correction was refused",
    429: "too many corrections from this user this minute (Retry-After)",
    503: "Redis or the model registry cannot be reached right now (Retry-After)",
}


async def _state(request: Request) -> ApiState:
    """The app's state (async: FastAPI would run a plain function in its thread pool, for every request)."""
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(_state)]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route may give (their schema is set in worker.api.openapi)."""
    return {status: {"description": _MEANING[status]} for status in statuses}
