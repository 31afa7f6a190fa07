"""The write token: ``Authorization: Bearer <token>`` on every write (corrections).

The token comes from ``TAGGER_API_TOKEN`` or, better in Kubernetes, ``TAGGER_API_TOKEN_FILE``; it is read
once at start. With neither set the API still serves reads and suggestions, and refuses writes saying how
to enable them. Tokens are compared in constant time, so response timing does not leak a prefix.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker.api.problems import ApiProblem

__all__ = ["BEARER", "check_token"]

# auto_error=False: a missing header becomes our own 401 problem rather than FastAPI's plain 403.
BEARER = HTTPBearer(auto_error=False, description="the API's write token (TAGGER_API_TOKEN or TAGGER_API_TOKEN_FILE)")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="rankae-tagger"'}


def check_token(expected: str | None, given: HTTPAuthorizationCredentials | None) -> None:
    """Raise a 403 problem when writes are disabled (no token configured), 401 when ``given`` does not match."""
    if expected is None:
        raise ApiProblem(403, "writes_disabled", "writes are disabled on this server: it has no API token. The "
                         "operator enables them with TAGGER_API_TOKEN or TAGGER_API_TOKEN_FILE")
    if given is None:
        raise ApiProblem(401, "unauthorized", "this route needs the API token: send the header "
                         "'Authorization: Bearer <token>'", _CHALLENGE)
    if not hmac.compare_digest(given.credentials.encode(), expected.encode()):
        raise ApiProblem(401, "unauthorized", "the API token does not match; check the token you were given",
                         _CHALLENGE)
