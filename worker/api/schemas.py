"""The API's request and response bodies (pydantic models; FastAPI turns them into the OpenAPI schemas).

Request models whose limits are settings (ids per lookup, texts per suggestion, bytes per text) are built
by functions, so the OpenAPI document a server publishes states the limits that server enforces. Request
bodies refuse unknown fields, so a misspelt field is an error rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from worker.api import status
from worker.learn.labels import Proposal
from worker.learn.registry import VersionInfo
from worker.store.client import TagResult
from worker.stream.messages import MAX_ID_CHARS, encodable

__all__ = ["CorrectionAccepted", "CorrectionRequest", "DocumentOut", "DocumentTags", "Health", "LabelsResponse",
           "LearnerResponse", "LookupItem", "LookupResponse", "ModelsResponse", "RecentItem", "RecentResponse",
           "SuggestResponse", "Suggestion", "Tag", "TagResultOut", "lookup_request", "suggest_request"]

MAX_K = 100  # tags per suggested document


def _storable(value: str) -> str:
    """Refuse strings Redis cannot store (unpaired surrogates have no UTF-8 encoding)."""
    if not encodable(value):
        raise ValueError("not valid Unicode (an unpaired surrogate)")
    return value


DocId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_storable)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tag(BaseModel):
    """One tag and its score (0-1), best first in every list."""

    label: str
    score: float


def _tags(pairs: list[tuple[str, float]]) -> list[Tag]:
    return [Tag(label=label, score=score) for label, score in pairs]


class TagResultOut(BaseModel):
    """A document's stored tags and where they came from."""

    tags: list[Tag]
    model: str = Field(description="version of the model that tagged the document")
    src: str = Field(description="topic/partition/offset of the Kafka message it came from")
    ts: int = Field(description="the message's timestamp, ms since the epoch")

    @classmethod
    def of(cls, result: TagResult) -> TagResultOut:
        """From the lookup client's result."""
        return cls(tags=_tags(result.tags), model=result.model, src=result.src, ts=result.ts)

    @classmethod
    def maybe(cls, result: TagResult | None) -> TagResultOut | None:
        """From the lookup client's result, None for an unknown document."""
        return None if result is None else cls.of(result)


class DocumentTags(TagResultOut):
    """``GET /v1/tags/{doc_id}``."""

    id: str

    @classmethod
    def of(cls, doc_id: str, result: TagResult) -> DocumentTags:  # type: ignore[override]
        """One id's stored result."""
        return cls(id=doc_id, tags=_tags(result.tags), model=result.model, src=result.src, ts=result.ts)


class LookupItem(BaseModel):
    """One id of a lookup; ``result`` is null when the document is unknown or its tags expired."""

    id: str
    result: TagResultOut | None


class LookupResponse(BaseModel):
    """The results in the order of the requested ids."""

    results: list[LookupItem]


def lookup_request(max_ids: int) -> type[BaseModel]:
    """``POST /v1/tags:lookup``'s body, with this server's limit on ids."""

    class LookupRequest(_Request):
        """Ids to look up, in one Redis round trip."""

        ids: list[DocId] = Field(min_length=1, max_length=max_ids, description="document ids (duplicates allowed)")

    return LookupRequest


class DocumentOut(BaseModel):
    """A document as the review page shows it: its text (null once expired) and its tags (null if none)."""

    id: str
    text: str | None
    result: TagResultOut | None


class RecentItem(BaseModel):
    """A recently tagged document."""

    id: str
    ts: int = Field(description="the tagged message's timestamp, ms since the epoch")
    result: TagResultOut | None


class RecentResponse(BaseModel):
    """Newest first."""

    documents: list[RecentItem]


def _within_bytes(limit: int) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not text.strip():
            raise ValueError("the text is blank")
        if len(text.encode("utf-8", errors="replace")) > limit:
            raise ValueError(f"the text is longer than {limit} bytes (TAGGER_MAX_TEXT_BYTES)")
        return text

    return check


def suggest_request(max_texts: int, max_text_bytes: int) -> type[BaseModel]:
    """``POST /v1/suggest``'s body, with this server's limits."""
    text = Annotated[str, StringConstraints(min_length=1, max_length=max_text_bytes),
                     AfterValidator(_within_bytes(max_text_bytes))]

    class SuggestRequest(_Request):
        """Texts to tag with the live model, in one batch."""

        texts: list[text] = Field(min_length=1, max_length=max_texts,
                                  description="documents' texts (title and body joined), tagged in one batch")
        k: int = Field(default=5, ge=1, le=MAX_K, description="tags per text")

    return SuggestRequest


class Suggestion(BaseModel):
    """One text's tags, best first."""

    tags: list[Tag]


class SuggestResponse(BaseModel):
    """The live model's tags for each text, in the order of the texts."""

    model: str = Field(description="version of the model that made the suggestions")
    results: list[Suggestion]

    @classmethod
    def of(cls, version: str, predicted: list[list[tuple[str, float]]]) -> SuggestResponse:
        """From ``Tagger.predict``'s output."""
        return cls(model=version, results=[Suggestion(tags=_tags(tags)) for tags in predicted])


class CorrectionRequest(_Request):
    """A correction of one document's tags, checked exactly as ``tagger correct`` checks it."""

    id: str = Field(description="the document's id (it must have been tagged)")
    add: list[str] = Field(default_factory=list, description="labels to add; one the model does not know proposes it")
    remove: list[str] = Field(default_factory=list, description="labels to remove (known to the model)")
    user: str = Field(description="who corrects (1-128 characters); the rate limit is per user")


class CorrectionAccepted(BaseModel):
    """The correction is queued for the learner."""

    id: str
    entry: str = Field(description="its entry id in the Redis stream tagger:corrections")


class NewLabel(BaseModel):
    """A label new to the live model, proposed in corrections or allowed by an operator."""

    name: str
    users: int = Field(description="distinct users who added it")
    allowed: bool = Field(description="admitted by an operator (tagger labels add)")
    admitted: bool = Field(description="the next learning round adds it to the model")

    @classmethod
    def of(cls, proposal: Proposal) -> NewLabel:
        """From the label book's proposal."""
        return cls(name=proposal.name, users=proposal.users, allowed=proposal.allowed, admitted=proposal.admitted)


class LabelsResponse(BaseModel):
    """The live model's labels and the new ones proposed in corrections."""

    model: str
    labels: list[str] = Field(description="labels the live model knows, in label-id order")
    new_labels: list[NewLabel]
    new_labels_open: bool = Field(description="whether corrections may propose labels the model does not know")
    min_users: int = Field(description="distinct users whose corrections admit a new label")


class VersionOut(BaseModel):
    """One stored model version."""

    version: str
    created: str
    valid_p1: float | None = Field(description="held-out P@1 the version was accepted with, when recorded")
    labels: int
    current: bool = Field(description="the registry's CURRENT (what workers serve)")
    served: bool = Field(description="the version this API's suggestions use")

    @classmethod
    def of(cls, info: VersionInfo, served: str) -> VersionOut:
        """From the registry's listing."""
        return cls(version=info.version, created=info.created, valid_p1=info.valid_p1, labels=info.labels,
                   current=info.current, served=info.version == served)


class RoundOut(BaseModel):
    """One entry of the registry's history: a promotion, a rejected or failed round, a rollback."""

    action: str
    version: str = Field(description="the live version after a promotion or rollback; the judged live one otherwise")
    ts: float = Field(description="seconds since the epoch")
    reason: str | None = None
    previous: str | None = None
    live: dict[str, float] | None = Field(default=None, description="the guard's scores of the live model")
    candidate: dict[str, float] | None = Field(default=None, description="the guard's scores of the candidate")

    @classmethod
    def of(cls, entry: dict[str, Any]) -> RoundOut:
        """From a history.jsonl line."""
        return cls(action=str(entry.get("action")), version=str(entry.get("version")), ts=float(entry.get("ts", 0)),
                   reason=entry.get("reason"), previous=entry.get("previous"), live=entry.get("live") or None,
                   candidate=entry.get("candidate") or None)


class ModelsResponse(BaseModel):
    """Model versions, the live one, and the guard's recent verdicts."""

    live: str = Field(description="the version workers serve (the registry's CURRENT)")
    served: str = Field(description="the version this API suggests with (follows live within seconds)")
    registry: bool = Field(description="whether TAGGER_MODEL_DIR is a registry (else one fixed checkpoint)")
    versions: list[VersionOut]
    rounds: list[RoundOut] = Field(description="newest first")
    rejected_in_a_row: int = Field(description="rounds rejected or failed since the last promotion")


class QueueOut(BaseModel):
    """The corrections queue."""

    stream_length: int
    pending: int = Field(description="delivered to the learner, not yet stored as examples")
    waiting: int | None = Field(description="not yet read by the learner; null when Redis cannot tell")
    learner_seen: bool = Field(description="whether a learner ever read the queue")
    examples: int = Field(description="corrected documents stored for training")
    rejected: dict[str, int] = Field(description="rejected corrections by reason")

    @classmethod
    def of(cls, queue: status.QueueStatus) -> QueueOut:
        """From the status reader."""
        return cls(stream_length=queue.stream_length, pending=queue.pending, waiting=queue.waiting,
                   learner_seen=queue.learner_seen, examples=queue.examples, rejected=queue.rejected)


class LearnerResponse(BaseModel):
    """What the learner has to do and what it decided lately."""

    queue: QueueOut
    rounds: list[RoundOut] = Field(description="newest first")
    rejected_in_a_row: int


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: str
