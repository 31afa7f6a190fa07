"""Redis connections built from the settings: URL, password (or password file), TLS CA bundle."""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from model.errors import ConfigError
from worker.settings import RedisSettings

__all__ = ["connect"]

log = logging.getLogger(__name__)


def connect(settings: RedisSettings, check: bool = True, wait: bool = True) -> redis.Redis:
    """A Redis client from the settings (URL, password or password file, TLS CA bundle).

    With ``check``, one PING proves the password and the server's certificate now, so a wrong one is a
    one-line ConfigError naming the setting rather than endless retries later. An unreachable server is
    only logged when ``wait`` (the worker pauses and retries its writes until Redis is back); a one-shot
    command passes ``wait=False`` and gets a ConfigError saying what to check.
    """
    options: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    password = settings.secret()
    if password:
        options["password"] = password
    if settings.redis_ssl_ca_certs:
        if not settings.redis_url.startswith("rediss://"):
            raise ConfigError("TAGGER_REDIS_SSL_CA_CERTS is set but TAGGER_REDIS_URL is not a rediss:// (TLS) URL")
        if not Path(settings.redis_ssl_ca_certs).is_file():
            raise ConfigError(f"TAGGER_REDIS_SSL_CA_CERTS: no such file {settings.redis_ssl_ca_certs}")
        options["ssl_ca_certs"] = settings.redis_ssl_ca_certs
    if check:
        _check(redis.Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 0), **options), wait)
    return redis.Redis.from_url(settings.redis_url, **options)


def _check(probe: redis.Redis, wait: bool) -> None:
    """One PING without retries (the worker's own client keeps redis-py's retry policy)."""
    kwargs = probe.connection_pool.connection_kwargs
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    try:
        probe.ping()
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


def _reason(err: Exception) -> str:
    """The SSL library's reason, e.g. "self-signed certificate in certificate chain"."""
    text = str(err)
    return text[text.index("certificate verify failed"):].split(" (_ssl")[0] if "verify failed" in text else text
