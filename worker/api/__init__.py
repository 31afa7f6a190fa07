"""The HTTP face of rankae-tagger: lookup, suggestions, corrections, models, and a review page.

``tagger api`` runs it as a process of its own (scaled apart from the workers), on FastAPI + uvicorn::

    app.py        the application: routes, middleware, error handlers, page     server.py  uvicorn
    state.py      what routes share: Redis client, the live model (hot-swapped), label book, token
    routes/       tags.py (lookup, documents, recent) · models.py (suggest, labels, models)
                  feedback.py (corrections, learner) · ops.py (healthz, readyz, metrics)
    schemas.py    request and response bodies            problems.py  RFC 9457 errors
    auth.py       the write token                        limits.py    request-body limit
    documents.py  document and recent-document reads     status.py    versions, rounds, corrections queue
    metrics.py    tagger_api_* metrics                   openapi.py   the OpenAPI document
    page.py, static/   the review page (plain HTML and JavaScript)

The entry points are ``worker.api.app.create_app`` (an app bound to an ``ApiState``) and
``worker.api.server.serve``. Nothing is imported here, so ``python -m worker.api.openapi`` runs cleanly.
"""
