"""Redis: the key schema, the connection, and tag writes in one pipeline per batch.

Key schema (what lookup clients read)::

    tagger:tags:{id}  hash   tags   JSON [[label, score], ...], best first
                             model  version of the model that tagged it
                             src    "topic/partition/offset" of the message it came from
                             ts     the message's Kafka timestamp, ms since the epoch
                      expiry TAGGER_TAGS_TTL_S (0 = none)
    tagger:doc:{id}   string JSON {"text": ...}, what the corrections issue retrains on
                      expiry TAGGER_DOC_TTL_S

A write is idempotent, and never replaces a result from a newer message: for the same partition
the higher offset wins, across partitions the later timestamp wins. The check and the write run as
one Lua script, so concurrent workers cannot interleave them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from model.errors import ConfigError
from worker.config import WorkerSettings

__all__ = ["DOC_KEY", "TAGS_KEY", "TagRecord", "TagWriter", "connect"]

log = logging.getLogger(__name__)
TAGS_KEY = "tagger:tags:{}"
DOC_KEY = "tagger:doc:{}"

_WRITE_IF_NEWER = """
local src = redis.call('HGET', KEYS[1], 'src')
if src then
  local where, offset = string.match(src, '^(.*)/(%d+)$')
  if where == ARGV[5] then
    if tonumber(offset) > tonumber(ARGV[6]) then return 0 end
  else
    local ts = tonumber(redis.call('HGET', KEYS[1], 'ts'))
    if ts and ts > tonumber(ARGV[4]) then return 0 end
  end
end
redis.call('HSET', KEYS[1], 'tags', ARGV[1], 'model', ARGV[2], 'src', ARGV[3], 'ts', ARGV[4])
if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[7]) else redis.call('PERSIST', KEYS[1]) end
if tonumber(ARGV[9]) > 0 then
  redis.call('SET', KEYS[2], ARGV[8], 'EX', ARGV[9])
else
  redis.call('SET', KEYS[2], ARGV[8])
end
return 1
"""


def connect(settings: WorkerSettings, check: bool = True, wait: bool = True) -> redis.Redis:
    """A Redis client from the settings (URL, password or password file, TLS CA bundle).

    With ``check``, one PING proves the password and the server's certificate now, so a wrong one is a
    one-line ConfigError naming the setting rather than endless retries later. An unreachable server is
    only logged when ``wait`` (the worker pauses and retries its writes until Redis is back); a one-shot
    command passes ``wait=False`` and gets a ConfigError saying what to check.
    """
    options: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    password = settings.redis_secret()
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


@dataclass(frozen=True)
class TagRecord:
    """One document's result, ready to write."""

    doc_id: str
    tags: list[tuple[str, float]]
    text: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class TagWriter:
    """Writes a batch of results in one pipeline (one round trip)."""

    def __init__(self, client: redis.Redis, tags_ttl_s: int = 0, doc_ttl_s: int = 0) -> None:
        self.client = client
        self.tags_ttl_s, self.doc_ttl_s = tags_ttl_s, doc_ttl_s
        self.script = client.register_script(_WRITE_IF_NEWER)

    def write(self, records: Sequence[TagRecord], model_version: str) -> list[bool]:
        """Write every record; True where written, False where a newer result was already stored."""
        pipe = self.client.pipeline(transaction=False)
        for r in records:
            tags = json.dumps([[label, score] for label, score in r.tags])
            where = f"{r.topic}/{r.partition}"
            self.script(keys=[TAGS_KEY.format(r.doc_id), DOC_KEY.format(r.doc_id)],
                        args=[tags, model_version, f"{where}/{r.offset}", r.timestamp_ms, where, r.offset,
                              self.tags_ttl_s, json.dumps({"text": r.text}), self.doc_ttl_s],
                        client=pipe)
        return [bool(done) for done in pipe.execute()]
