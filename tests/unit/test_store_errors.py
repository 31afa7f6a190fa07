"""Which Redis errors the worker retries (Redis away, a failover, loading, memory full) and which stop it."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)

from worker.store.connection import permanent


@pytest.mark.parametrize("error", [
    redis.ConnectionError("Connection refused"), redis.TimeoutError("Timeout reading from socket"),
    BusyLoadingError("LOADING Redis is loading the dataset in memory"),
    ReadOnlyError("READONLY You can't write against a read only replica."),
    MasterDownError("MASTERDOWN Link with MASTER is down"), TryAgainError("TRYAGAIN Multiple keys request"),
    ClusterDownError("CLUSTERDOWN The cluster is down"), OutOfMemoryError("OOM command not allowed"),
    redis.ResponseError("BUSY Redis is busy running a script"), redis.exceptions.NoScriptError("NOSCRIPT"),
])
def test_errors_a_retry_can_outlast_are_retried(error: redis.RedisError) -> None:
    assert permanent(error) is None


@pytest.mark.parametrize("error, fix", [
    (redis.AuthenticationError("invalid password"), "check TAGGER_REDIS_PASSWORD"),
    (NoPermissionError("NOPERM this user has no permissions to run the 'evalsha' command"), "ACL"),
    (redis.exceptions.MovedError("3999 127.0.0.1:6381"), "it is a cluster node; set TAGGER_REDIS_CLUSTER=1"),
    (redis.ResponseError("CROSSSLOT Keys in request don't hash to the same slot"), "across slots"),
    (redis.ResponseError("ERR unknown command 'EVALSHA'"), "retrying will not help"),
])
def test_errors_no_retry_can_fix_say_what_to_change(error: redis.RedisError, fix: str) -> None:
    assert fix in (permanent(error) or "")
