"""The live model: suggestions for new texts, its labels (and the proposed new ones), its versions."""

from fastapi import APIRouter

from worker.api import status
from worker.api.metrics import ApiMetrics
from worker.api.routes.common import State, errors
from worker.api.schemas import (
    LabelsResponse,
    ModelsResponse,
    NewLabel,
    RoundOut,
    SuggestResponse,
    VersionOut,
    suggest_request,
)
from worker.settings import Settings

__all__ = ["router"]


def router(settings: Settings, metrics: ApiMetrics) -> APIRouter:
    """The model routes."""
    routes = APIRouter(tags=["models"])
    SuggestRequest = suggest_request(settings.api.api_max_suggest_texts, settings.stream.max_text_bytes)

    @routes.post("/v1/suggest", responses=errors(400, 413, 422, 503))
    def suggest(body: SuggestRequest, state: State) -> SuggestResponse:  # type: ignore[valid-type]
        """Tags for texts that never went through Kafka, from the live model, in one batch (nothing is stored)."""
        texts: list[str] = body.texts  # type: ignore[attr-defined]
        tagger = state.tagger()  # one model for the whole batch, even if a new version is swapped in meanwhile
        metrics.suggest_texts.observe(len(texts))
        return SuggestResponse.of(tagger.version, tagger.predict(texts, k=body.k))  # type: ignore[attr-defined]

    @routes.get("/v1/labels", responses=errors(503))
    def labels(state: State) -> LabelsResponse:
        """The labels the live model knows, and labels new to it that corrections proposed (admitted or not)."""
        tagger, book = state.tagger(), state.labels()
        proposals = book.proposals(set(tagger.label_names))
        return LabelsResponse(model=tagger.version, labels=tagger.label_names,
                              new_labels=[NewLabel.of(p) for p in proposals], new_labels_open=book.open,
                              min_users=book.min_users)

    @routes.get("/v1/models", responses=errors(503))
    def models(state: State) -> ModelsResponse:
        """Stored versions (the live one marked), the guard's latest verdicts, and what this API serves."""
        served, registry = state.tagger(), state.registry()
        listed = status.versions(settings.model.model_dir, served)
        live = registry.current() if registry is not None else served.version
        return ModelsResponse(live=live, served=served.version, registry=registry is not None,
                              versions=[VersionOut.of(info, served.version) for info in listed],
                              rounds=[RoundOut.of(entry) for entry in status.rounds(registry)],
                              rejected_in_a_row=status.rejected_in_a_row(registry))

    return routes
