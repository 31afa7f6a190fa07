"""Lookups of stored tags: one id, many ids in one round trip, a document with its text, recent documents."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from worker.api.documents import read_document, recent_ids
from worker.api.problems import ApiProblem
from worker.api.routes.common import State, errors
from worker.api.schemas import (
    DocumentOut,
    DocumentTags,
    LookupItem,
    LookupResponse,
    RecentItem,
    RecentResponse,
    TagResultOut,
    lookup_request,
)
from worker.api.store import lookup as lookup_tags
from worker.settings import ApiSettings
from worker.stream.messages import MAX_ID_CHARS

__all__ = ["router"]

DocId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS, description="the document's id (slashes allowed)")]


def _unknown(doc_id: str) -> ApiProblem:
    return ApiProblem(404, "unknown_document", f"no tags for document {doc_id[:100]!r}: it was never tagged, or its "
                      "tags expired (TAGGER_TAGS_TTL_S); check the id")


def router(settings: ApiSettings) -> APIRouter:
    """The lookup routes."""
    routes = APIRouter(tags=["tags"])
    LookupRequest = lookup_request(settings.api_max_lookup_ids)

    @routes.get("/v1/tags/{doc_id:path}", responses=errors(404, 422, 503))
    async def get_tags(doc_id: DocId, state: State) -> DocumentTags:
        """A document's tags, best first, with the version of the model that tagged it."""
        found = (await lookup_tags(state.aclient, [doc_id]))[doc_id]
        if found is None:
            raise _unknown(doc_id)
        return DocumentTags.of(doc_id, found)

    @routes.post("/v1/tags:lookup", responses=errors(400, 413, 422, 503))
    async def lookup(body: LookupRequest, state: State) -> LookupResponse:  # type: ignore[valid-type]
        """Many documents' tags in one Redis round trip, in the order asked; null for unknown ids."""
        ids: list[str] = body.ids  # type: ignore[attr-defined]
        found = await lookup_tags(state.aclient, ids)
        return LookupResponse(results=[LookupItem(id=i, result=TagResultOut.maybe(found[i])) for i in ids])

    @routes.get("/v1/documents/{doc_id:path}", responses=errors(404, 422, 503))
    async def get_document(doc_id: DocId, state: State) -> DocumentOut:
        """A document's stored text (kept TAGGER_DOC_TTL_S) and its tags, for review."""
        document = await read_document(state.aclient, doc_id)
        if document is None:
            raise _unknown(doc_id)
        return DocumentOut(id=doc_id, text=document.text, result=TagResultOut.maybe(document.result))

    @routes.get("/v1/recent", responses=errors(422, 503))
    async def recent(state: State, limit: int = Query(20, ge=1, le=200, description="how many")) -> RecentResponse:
        """The most recently tagged documents, newest first, with their tags."""
        entries = await recent_ids(state.aclient, limit)
        found = await lookup_tags(state.aclient, [doc_id for doc_id, _ in entries])
        return RecentResponse(documents=[RecentItem(id=i, ts=ts, result=TagResultOut.maybe(found[i]))
                                         for i, ts in entries])

    return routes

