"""The request-body limit, as ASGI middleware in front of everything else.

A body declared larger than ``max_bytes`` (Content-Length) is refused before a byte of it is read; a
chunked body is counted as it arrives and refused once it passes the limit, so a client cannot make the
server buffer an unbounded request either way.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.problems import problem_response

__all__ = ["BodyLimit"]


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 problem."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def detail(self) -> str:
        """The message of a refused body."""
        return (f"the request body is larger than this server's limit of {self.max_bytes} bytes "
                "(TAGGER_API_MAX_BODY_BYTES); send fewer texts or ids per request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = problem_response(413, "too_large", self.detail(), scope["path"], {"Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # raised inside the route's body read: the problem handler answers it
                raise HTTPException(413, self.detail())
            return message

        return counted
