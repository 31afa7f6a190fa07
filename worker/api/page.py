"""The review page: one HTML file, a script and a style sheet shipped in the package (no build step, no CDN).

The page reads and writes through the API's own routes (``/v1/documents``, ``/v1/recent``,
``/v1/corrections``, ``/v1/models``, ``/v1/learner``, ``/v1/labels``), so it can do nothing a client of the
API cannot, and a correction from the page needs the same token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC", "install_page"]

STATIC = Path(__file__).parent / "static"
# Scripts, styles and requests go to this server only, and no inline script or style runs.
_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
           "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static``."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        """The review page."""
        return HTMLResponse(html, headers={"Content-Security-Policy": _POLICY, "X-Content-Type-Options": "nosniff"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
