"""The OpenAPI document: FastAPI's, with every error response declared as problem+json.

``python -m worker.api.openapi [PATH]`` writes the document of a server with default settings (the one
committed as docs/openapi.json; a test fails when the app's document drifts from it). A running server
publishes its own at ``/openapi.json``, with its configured limits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from worker.api.problems import MEDIA_TYPE, Problem

__all__ = ["document", "install_openapi", "render"]

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, errors as problem+json and FastAPI's own validation schemas dropped."""
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                       tags=app.openapi_tags)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(_problem_schemas())
    for operation in (op for path in spec["paths"].values() for op in path.values()):
        for status, response in operation.get("responses", {}).items():
            if int(status) >= 400:
                response["content"] = {MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    return spec


def _problem_schemas() -> dict[str, Any]:
    """Problem and FieldError as JSON Schema, with references into components."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "Problem": schema}


def install_openapi(app: FastAPI) -> None:
    """Make ``app`` publish :func:`document` at /openapi.json (built once, on first request)."""
    built: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not built:
            built.update(document(app))
        return built

    app.openapi = openapi  # type: ignore[method-assign]


def render(spec: dict[str, Any]) -> str:
    """The document as committed: indented, keys in a stable order, a final newline."""
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write the default server's document to ``argv[0]`` (or stdout)."""
    from worker.api.app import application
    from worker.settings import Settings

    text = render(document(application(Settings())))
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
