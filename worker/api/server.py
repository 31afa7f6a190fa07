"""Run the API under uvicorn until SIGTERM or SIGINT (uvicorn finishes the requests in flight, then stops)."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from worker.api.app import create_app
from worker.api.state import ApiState
from worker.settings import Settings

__all__ = ["serve"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, except that a graceful stop ends the process with status 0, as ``tagger serve`` does
    (uvicorn raises the signal again once it has stopped, so the process would die of SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the server gracefully (a second SIGINT forces it); restored afterwards."""
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(settings: Settings) -> None:
    """Load the model, connect to Redis, and serve the API and the review page on ``api_host:api_port``."""
    state = ApiState.start(settings)
    api = settings.api
    config = uvicorn.Config(create_app(settings, state), host=api.api_host, port=api.api_port, log_config=None,
                            access_log=False, server_header=False, timeout_graceful_shutdown=10)
    log.info("api for model %s on http://%s:%d (review page at /, OpenAPI at /openapi.json; writes %s)",
             state.watcher.served.version, api.api_host, api.api_port,
             "need the token" if state.token else "disabled: no TAGGER_API_TOKEN")
    _Server(config).run()
