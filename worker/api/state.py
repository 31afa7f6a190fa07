"""What the API's routes share, built once at start: the Redis client, the served model, the label book.

The model is held by the worker's :class:`~worker.stream.watcher.ModelWatcher`: when ``TAGGER_MODEL_DIR``
is a registry, a background thread loads a new ``CURRENT`` version and the next suggestion swaps it in,
so ``POST /v1/suggest`` always answers with the live model, as the workers tag with it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from model.tagger import Tagger
from worker.api.store import AsyncClient, async_client
from worker.learn.corrections import CorrectionClient
from worker.learn.labels import LabelBook
from worker.learn.registry import Registry
from worker.metrics import WorkerMetrics
from worker.settings import Settings
from worker.store.connection import connect
from worker.stream.watcher import ModelWatcher

__all__ = ["ApiState", "RedisClient"]

log = logging.getLogger(__name__)

# One server or a Redis Cluster, as the store's connect() hands out (the API uses commands both have).
RedisClient = redis.Redis | RedisCluster


@dataclass
class ApiState:
    """The clients and the model every route uses."""

    settings: Settings
    client: RedisClient  # for the routes that run in the thread pool (corrections, labels, learner)
    aclient: AsyncClient  # for the lookup routes, which stay on the event loop
    watcher: ModelWatcher
    token: str | None  # the write token; None: writes are refused
    stopping: threading.Event = field(default_factory=threading.Event)
    _corrections: dict[str, CorrectionClient] = field(default_factory=dict)  # by model version: the newest only

    @classmethod
    def start(cls, settings: Settings, client: RedisClient | None = None) -> ApiState:
        """Connect to Redis (an outage is logged, not fatal: /readyz says so), load the model and watch it."""
        token = settings.api.token()
        client = client or connect(settings.redis, wait=True)
        # Two quick retries, not redis-py's ten over seconds: a caller gets a 503 in a fraction of a second
        # during an outage, rather than a request held open.
        client.set_retry(Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 2))
        stopping = threading.Event()
        # The watcher records the model on worker metrics; the API exports its own (ModelInfo), so these stay
        # on a registry nobody serves.
        watcher = ModelWatcher.start(settings.model, WorkerMetrics(), stopping)
        if token is None:
            log.warning("no API token (TAGGER_API_TOKEN / TAGGER_API_TOKEN_FILE): corrections will be refused")
        return cls(settings, client, async_client(settings.redis), watcher, token, stopping)

    def tagger(self) -> Tagger:
        """The live model, swapping in a newly loaded version first."""
        if self.watcher.pending():
            self.watcher.swap()
        return self.watcher.served

    def registry(self) -> Registry | None:
        """The model registry, when ``TAGGER_MODEL_DIR`` is one."""
        root = self.settings.model.model_dir
        return Registry(root) if Registry.is_registry(root) else None

    def labels(self) -> LabelBook:
        """Proposals of new labels and the admission rule."""
        return LabelBook.from_settings(self.client, self.settings.corrections)

    def corrections(self) -> CorrectionClient:
        """The client ``tagger correct`` uses (same validation and rate limit), knowing the served model's labels."""
        tagger = self.tagger()
        if tagger.version not in self._corrections:
            built = CorrectionClient(self.client, tagger.label_names,
                                     self.settings.corrections.corrections_per_user_per_minute, self.labels())
            self._corrections = {tagger.version: built}  # a new dict, so a concurrent reader never sees it empty
        return self._corrections[tagger.version]

    async def ready(self) -> bool:
        """Whether Redis answers (the model is loaded before the server starts)."""
        try:
            return bool(await self.aclient.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        """Stop watching the registry and close the Redis connections."""
        self.stopping.set()
        self.client.close()
        await self.aclient.aclose()
