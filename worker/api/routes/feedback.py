"""Corrections (a write: the API token is needed) and the learner's status."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials

from worker.api import status
from worker.api.auth import BEARER, check_token
from worker.api.routes.common import State, errors
from worker.api.schemas import CorrectionAccepted, CorrectionRequest, LearnerResponse, QueueOut, RoundOut

__all__ = ["router"]

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def router() -> APIRouter:
    """The feedback routes."""
    routes = APIRouter(tags=["feedback"])

    @routes.post("/v1/corrections", status_code=202, responses=errors(400, 401, 403, 404, 413, 422, 429, 503))
    def correct(body: CorrectionRequest, state: State, credentials: Credentials) -> CorrectionAccepted:
        """Queue a correction for the learner: validated and rate-limited per user exactly as ``tagger correct``."""
        check_token(state.token, credentials)
        entry = state.corrections().submit(body.id, body.add, body.remove, body.user)
        return CorrectionAccepted(id=body.id, entry=entry)

    @routes.get("/v1/learner", responses=errors(503))
    def learner(state: State) -> LearnerResponse:
        """The corrections queue (waiting, pending, stored examples, rejections) and the latest rounds."""
        found = status.learner_status(state.client, state.registry())
        return LearnerResponse(queue=QueueOut.of(found.queue), rounds=[RoundOut.of(e) for e in found.rounds],
                               rejected_in_a_row=found.rejected_in_a_row)

    return routes
