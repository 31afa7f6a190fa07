"""Errors as RFC 9457 problem details (``application/problem+json``), each with a message a user can act on.

Every error response of the API is one JSON object::

    {"type": "tag:rankae-tagger,2026:problem/rate_limited", "title": "Too Many Requests", "status": 429,
     "detail": "user 'alice' sent more than 30 corrections this minute; try again later",
     "code": "rate_limited", "instance": "/v1/corrections"}

``code`` is short and stable: the rejection reason of :mod:`worker.learn.corrections` where one applies,
else one of ``not_found``, ``unknown_document``, ``invalid_request``, ``too_large``, ``unauthorized``,
``writes_disabled``, ``method_not_allowed``, ``redis_unavailable``, ``unavailable``, ``internal``. A request
that fails validation lists each bad field in ``errors``. ``type`` is a tag URI (RFC 4151): a name, not a
page to fetch; docs/api.md explains every code.

    ApiProblem (TaggerError)   raised by routes and dependencies with a status, a code and a detail
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from model.errors import TaggerError
from worker.learn.corrections import CorrectionRejected

__all__ = ["MEDIA_TYPE", "ApiProblem", "FieldError", "Problem", "install_handlers", "problem_response",
           "problem_type"]

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
_STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
                 422: "invalid_request", 429: "rate_limited", 503: "unavailable"}
# How the corrections' rejection reasons map onto HTTP: what is missing is 404, too many is 429, the rest
# is a request the server understood but will not take (422).
_REJECTION_STATUS = {"unknown_document": 404, "rate_limited": 429}


class FieldError(BaseModel):
    """One invalid part of a request."""

    loc: str = Field(description="where: body.ids[3], path.doc_id, query.limit ...")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(description="a tag URI naming the kind of problem; docs/api.md explains each code")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what is wrong and what to do about it")
    code: str = Field(description="short, stable name of the problem")
    instance: str = Field(description="the request path")
    errors: list[FieldError] | None = Field(default=None, description="each invalid field, for invalid_request")


class ApiProblem(TaggerError):
    """A request the API answers with a problem: ``status``, a stable ``code`` and the message as detail."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.headers = status, code, headers or {}


def problem_type(code: str) -> str:
    """The ``type`` URI of a problem code.

    >>> problem_type("rate_limited")
    'tag:rankae-tagger,2026:problem/rate_limited'
    """
    return f"tag:rankae-tagger,2026:problem/{code}"


def problem_response(status: int, code: str, detail: str, instance: str, headers: dict[str, str] | None = None,
                     errors: list[FieldError] | None = None) -> JSONResponse:
    """A problem+json response."""
    body = Problem(type=problem_type(code), title=HTTPStatus(status).phrase, status=status, detail=detail,
                   code=code, instance=instance, errors=errors)
    return JSONResponse(body.model_dump(exclude_none=True), status, headers, media_type=MEDIA_TYPE)


def _path(request: Request) -> str:
    return request.url.path


async def _on_problem(request: Request, exc: ApiProblem) -> JSONResponse:
    return problem_response(exc.status, exc.code, str(exc), _path(request), exc.headers)


async def _on_rejected(request: Request, exc: CorrectionRejected) -> JSONResponse:
    status = _REJECTION_STATUS.get(exc.reason, 422)
    headers = {"Retry-After": "60"} if exc.reason == "rate_limited" else None  # the limit's window is a minute
    return problem_response(status, exc.reason, str(exc), _path(request), headers)


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [FieldError(loc=_location(error.get("loc", ())), message=str(error.get("msg", "invalid")))
              for error in exc.errors()]
    first = f"{errors[0].loc}: {errors[0].message}" if errors else "the request is not valid"
    more = f" (and {len(errors) - 1} more, listed in errors)" if len(errors) > 1 else ""
    detail = f"{first}{more}; see /docs for this route's request schema"
    return problem_response(422, "invalid_request", detail, _path(request), errors=errors[:20])


def _location(loc: Any) -> str:
    """("body", "ids", 3) -> "body.ids[3]"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


async def _on_http(request: Request, exc: HTTPException) -> JSONResponse:
    code = _STATUS_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "unavailable")
    detail = str(exc.detail)
    if exc.status_code == 400 and detail == "There was an error parsing the body":  # FastAPI's, on bad bytes
        detail = "the request body is not JSON in UTF-8; send a JSON object with Content-Type: application/json"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = f"no such route: {request.method} {_path(request)}; the routes are listed at /docs"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {_path(request)}; allowed: {(exc.headers or {}).get('Allow')}"
    return problem_response(exc.status_code, code, detail, _path(request), dict(exc.headers or {}))


async def _on_redis(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable for %s %s: %s", request.method, _path(request), exc)
    return problem_response(503, "redis_unavailable", "the tag store (Redis) cannot be reached right now; retry in a "
                            "few seconds, and if it lasts ask the operator to check TAGGER_REDIS_URL and Redis",
                            _path(request), {"Retry-After": "5"})


async def _on_tagger(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed: %s", request.method, _path(request), exc)
    return problem_response(503, "unavailable", f"{exc}", _path(request), {"Retry-After": "30"})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, _path(request), exc_info=exc)
    return problem_response(500, "internal", "an unexpected error; the server's log has the traceback. Please "
                            "report it with the time of the request", _path(request))


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem+json body."""
    handlers: list[tuple[type[Exception], Any]] = [
        (ApiProblem, _on_problem), (CorrectionRejected, _on_rejected), (RequestValidationError, _on_invalid),
        (HTTPException, _on_http), (redis.ConnectionError, _on_redis), (redis.TimeoutError, _on_redis),
        (TaggerError, _on_tagger), (Exception, _on_unexpected)]
    for kind, handler in handlers:  # Any: Starlette types every handler as taking a plain Exception
        app.add_exception_handler(kind, handler)
