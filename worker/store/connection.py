"""Redis connections built from the settings: URL, password (or password file), TLS CA bundle, cluster mode.

With ``TAGGER_REDIS_CLUSTER=1`` the URL names any one node of a Redis Cluster and the client is redis-py's
cluster client, which discovers the others and routes each key to its slot's node; without it, a plain
client. Whether the server agrees is checked at connect time, so the wrong mode is a one-line error
rather than writes failing later. :func:`permanent` tells errors worth retrying (Redis away, a failover,
loading) from those that a retry cannot fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry

from model.errors import ConfigError
from worker.settings import RedisSettings

__all__ = ["Client", "client_options", "connect", "permanent"]

# What every component is handed: one server or a cluster (their command APIs are the same).
Client = redis.Redis | RedisCluster
# Errors a retry can outlast: the server away or restarting, a failover in progress, memory full (the
# operator is alerted and frees some), a script busy, a node that lost the write script again (reloaded).
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, BusyLoadingError, ReadOnlyError, MasterDownError,
              TryAgainError, ClusterDownError, OutOfMemoryError, NoScriptError)

log = logging.getLogger(__name__)


def connect(settings: RedisSettings, check: bool = True, wait: bool = True) -> Client:
    """A Redis client from the settings (URL, password or password file, TLS CA bundle, cluster mode).

    With ``check``, one PING proves the password and the server's certificate now, and the server's
    cluster mode is compared with ``TAGGER_REDIS_CLUSTER``, so a wrong one is a one-line ConfigError naming
    the setting rather than endless retries later. An unreachable server is only logged when ``wait`` (the
    worker pauses and retries its writes until Redis is back); a one-shot command passes ``wait=False`` and
    gets a ConfigError saying what to check.
    """
    options = client_options(settings)
    if check:
        _check(redis.Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 0), **options), wait,
               settings.redis_cluster)
    if settings.redis_cluster:
        return _cluster(settings.redis_url, options)
    return redis.Redis.from_url(settings.redis_url, **options)


def client_options(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's keyword options for the settings (timeouts, password or password file, TLS CA bundle), for
    any client of the configured server: sync or asyncio, one server or a cluster."""
    options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    password = settings.secret()
    if password:
        options["password"] = password
    if settings.redis_ssl_ca_certs:
        if not settings.redis_url.startswith("rediss://"):
            raise ConfigError("TAGGER_REDIS_SSL_CA_CERTS is set but TAGGER_REDIS_URL is not a rediss:// (TLS) URL")
        if not Path(settings.redis_ssl_ca_certs).is_file():
            raise ConfigError(f"TAGGER_REDIS_SSL_CA_CERTS: no such file {settings.redis_ssl_ca_certs}")
        options["ssl_ca_certs"] = settings.redis_ssl_ca_certs
    return options


def permanent(err: redis.RedisError) -> str | None:
    """What to fix when retrying ``err`` cannot help (credentials, the wrong mode, keys across slots, a key
    of the wrong type); None when it is worth retrying."""
    if isinstance(err, redis.AuthenticationError | NoPermissionError):
        return f"Redis refused the credentials or the user's ACL ({err}); check TAGGER_REDIS_PASSWORD"
    if isinstance(err, _TRANSIENT) or str(err).startswith("BUSY"):
        return None
    if isinstance(err, redis.exceptions.MovedError | redis.exceptions.AskError):
        return f"Redis answered {err}: it is a cluster node; set TAGGER_REDIS_CLUSTER=1"
    if isinstance(err, RedisClusterException) or "CROSSSLOT" in str(err):
        return f"Redis Cluster refused a command across slots ({err}); a client and server of different versions?"
    return f"Redis refused a command ({err}); retrying will not help"


def _cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    try:
        return RedisCluster.from_url(url, **options)
    except RedisClusterException as err:
        where = url.rsplit("@", 1)[-1]  # never the password
        raise ConfigError(f"TAGGER_REDIS_CLUSTER is set but Redis at {where} gave no cluster ({err}); check "
                          "the URL, or unset TAGGER_REDIS_CLUSTER for a single server") from err


def _check(probe: redis.Redis, wait: bool, cluster: bool) -> None:
    """One PING without retries (the worker's own client keeps redis-py's retry policy); then the mode."""
    kwargs = probe.connection_pool.connection_kwargs
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    try:
        probe.ping()
        _check_mode(probe, where, cluster)
    except redis.AuthenticationError as err:
        if not kwargs.get("password"):
            raise ConfigError(f"Redis at {where} requires a password; set TAGGER_REDIS_PASSWORD or "
                              "TAGGER_REDIS_PASSWORD_FILE") from None
        raise ConfigError(f"Redis at {where} refused to authenticate ({err}); check TAGGER_REDIS_PASSWORD or "
                          "TAGGER_REDIS_PASSWORD_FILE (or the password in TAGGER_REDIS_URL)") from None
    except redis.ConnectionError as err:
        if "CERTIFICATE_VERIFY_FAILED" in str(err):
            raise ConfigError(f"Redis at {where}: TLS certificate not trusted ({_reason(err)}); set "
                              "TAGGER_REDIS_SSL_CA_CERTS to the CA that signed the server's certificate") from None
        if not wait:
            raise ConfigError(f"cannot reach Redis at {where} ({_reason(err)}); check TAGGER_REDIS_URL "
                              "(or --redis-url) and that the server is running") from None
        log.warning("redis at %s is not reachable yet (%s); writes will be retried", where, err)
    except redis.ResponseError as err:
        if "NOAUTH" in str(err) or "WRONGPASS" in str(err):
            raise ConfigError(f"Redis at {where} needs a password ({err}); set TAGGER_REDIS_PASSWORD or "
                              "TAGGER_REDIS_PASSWORD_FILE") from None
        raise
    finally:
        probe.close()


def _check_mode(probe: redis.Redis, where: str, cluster: bool) -> None:
    """ConfigError when the server's cluster mode is not the one configured (skipped where ACLs hide INFO)."""
    try:
        enabled = bool(probe.info("cluster").get("cluster_enabled"))
    except NoPermissionError:
        return
    if enabled and not cluster:
        raise ConfigError(f"Redis at {where} is a Redis Cluster node; set TAGGER_REDIS_CLUSTER=1")
    if cluster and not enabled:
        raise ConfigError(f"TAGGER_REDIS_CLUSTER is set but Redis at {where} is not in cluster mode; unset it")


def _reason(err: Exception) -> str:
    """The SSL library's reason, e.g. "self-signed certificate in certificate chain"."""
    text = str(err)
    return text[text.index("certificate verify failed"):].split(" (_ssl")[0] if "verify failed" in text else text
