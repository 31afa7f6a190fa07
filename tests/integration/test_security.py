"""Security end to end: Redis AUTH (env and secret file), TLS to Redis with a self-signed CA, checkpoints
that would run code on load, and one user's correction flood.

The certificates are made with the ``openssl`` CLI in a temporary directory; the TLS redis-server runs
with ``--port 0 --tls-port P`` so it has no plaintext port at all.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from model.errors import ConfigError
from tests.integration.conftest import Stream, WorkerProcess, tagged_ids, wait_until
from worker.learn.corrections import CorrectionClient, CorrectionRejected
from worker.learn.registry import Registry
from worker.services import Service, ServiceError, free_port, start_redis
from worker.settings import RedisSettings
from worker.store.client import TagClient
from worker.store.connection import connect
from worker.store.keys import REJECTED
from worker.store.writer import TagRecord, TagWriter

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse-battery-staple"


# ---------------------------------------------------------------------------------------------- services


@pytest.fixture(scope="module")
def auth_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A redis-server that requires PASSWORD."""
    try:
        service = start_redis(tmp_path_factory.mktemp("auth-redis"), extra=["--requirepass", PASSWORD])
    except ServiceError as err:
        pytest.skip(str(err))
    yield service
    service.stop()


@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate it signed (for 127.0.0.1 and localhost), and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> Certificates:
    """Self-signed CA + server certificate + a second CA, with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found; install it with: apt-get install -y openssl")
    directory.mkdir(parents=True, exist_ok=True)
    subject_alt = directory / "san.ext"
    subject_alt.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=rankae test {ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
             "-out", "server.csr", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=directory)
    return Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                        directory / "other-ca.pem")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[Service]:
    """A redis-server speaking only TLS (no plaintext port), not asking clients for certificates."""
    port = free_port()
    tls = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certificates.server_cert),
           "--tls-key-file", str(certificates.server_key), "--tls-ca-cert-file", str(certificates.ca),
           "--tls-auth-clients", "no"]  # later directives win over start_redis's own --port
    try:
        service = start_redis(tmp_path_factory.mktemp("tls-redis"), port=port, extra=tls)
    except ServiceError as err:
        pytest.skip(f"redis-server without TLS support? {err}")
    yield service
    service.stop()


def tls_env(service: Service, ca: Path) -> dict[str, str]:
    return {"TAGGER_REDIS_URL": f"rediss://{service.address}/0", "TAGGER_REDIS_SSL_CA_CERTS": str(ca)}


def run_documents(stream: Stream, worker: WorkerProcess, settings: RedisSettings, n: int = 30) -> list[str]:
    """Produce n documents and wait until they are tagged, read back through ``settings``' Redis."""
    worker.wait_ready()
    docs = stream.documents(n)
    stream.produce([value for _, value in docs])
    ids = [doc_id for doc_id, _ in docs]
    client = TagClient.from_settings(settings)
    wait_until(lambda: all(found is not None for found in client.lookup(ids).values()), 60,
               f"documents tagged (log {worker.log_path})")
    return ids


def one_line_error(worker: WorkerProcess, timeout: float = 60) -> str:
    """The worker exits with status 2 and a one-line error, no traceback; returns that line."""
    assert worker.process.wait(timeout) == 2
    log = worker.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith("tagger: error: ")
    return last


# ---------------------------------------------------------------------------------------------- Redis AUTH


@pytest.mark.parametrize("source", ["env", "file"])
def test_worker_authenticates_to_redis_with_a_password_from_env_or_a_secret_file(
        source: str, stream: Stream, start_worker: Callable[..., WorkerProcess], auth_redis: Service,
        tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")  # as a mounted Kubernetes secret may end
    env = {"TAGGER_REDIS_URL": f"redis://{auth_redis.address}/0"}
    env |= {"TAGGER_REDIS_PASSWORD": PASSWORD} if source == "env" else {"TAGGER_REDIS_PASSWORD_FILE": str(secret)}
    worker = start_worker(**env)
    ids = run_documents(stream, worker, RedisSettings.from_sources(env))
    assert PASSWORD not in worker.log_path.read_text()
    stream.redis_url = f"redis://:{PASSWORD}@{auth_redis.address}/0"
    assert tagged_ids(stream.redis_url, ids) == set(ids)


def test_tag_and_correction_clients_authenticate_from_env_and_file(auth_redis: Service, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    url = f"redis://{auth_redis.address}/0"
    for env in ({"TAGGER_REDIS_URL": url, "TAGGER_REDIS_PASSWORD": PASSWORD},
                {"TAGGER_REDIS_URL": url, "TAGGER_REDIS_PASSWORD_FILE": str(tmp_path / "pw")}):
        settings = RedisSettings.from_sources(env)
        TagWriter(connect(settings)).write([TagRecord("auth-doc", [("crude", 0.9)], "oil", "docs", 0, 1, 1)], "v1")
        assert TagClient.from_settings(settings).lookup(["auth-doc"])["auth-doc"] is not None
        CorrectionClient(connect(settings), ["crude", "ship"]).submit("auth-doc", ["ship"], [], "alice")


def test_a_wrong_redis_password_is_a_one_line_error_naming_the_setting_without_the_password(
        stream: Stream, start_worker: Callable[..., WorkerProcess], auth_redis: Service) -> None:
    wrong = "not-the-password-1234"
    worker = start_worker(TAGGER_REDIS_URL=f"redis://{auth_redis.address}/0", TAGGER_REDIS_PASSWORD=wrong)
    line = one_line_error(worker)
    assert "TAGGER_REDIS_PASSWORD" in line and "refused to authenticate" in line
    assert wrong not in worker.log_path.read_text()
    with pytest.raises(ConfigError, match="requires a password; set TAGGER_REDIS_PASSWORD"):
        connect(RedisSettings.from_sources({"TAGGER_REDIS_URL": f"redis://{auth_redis.address}/0"}))


# ---------------------------------------------------------------------------------------------- TLS


def test_worker_tags_through_tls_redis_verified_against_the_ca(
        stream: Stream, start_worker: Callable[..., WorkerProcess], tls_redis: Service,
        certificates: Certificates) -> None:
    env = tls_env(tls_redis, certificates.ca)
    worker = start_worker(**env)
    ids = run_documents(stream, worker, RedisSettings.from_sources(env))
    found = TagClient.from_settings(RedisSettings.from_sources(env)).lookup(ids[:1])[ids[0]]
    assert found is not None and found.src.startswith(stream.topic + "/")


def test_a_redis_certificate_from_an_unknown_ca_is_refused_with_a_clear_error(
        stream: Stream, start_worker: Callable[..., WorkerProcess], tls_redis: Service,
        certificates: Certificates) -> None:
    worker = start_worker(**tls_env(tls_redis, certificates.other_ca))
    line = one_line_error(worker)
    assert "TAGGER_REDIS_SSL_CA_CERTS" in line and "certificate verify failed" in line
    with pytest.raises(ConfigError, match="certificate verify failed"):  # the lookup client too
        TagClient.from_settings(RedisSettings.from_sources(tls_env(tls_redis, certificates.other_ca)))


# ---------------------------------------------------------------------------------------------- checkpoints


class _Touch:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def code_running_checkpoint(model_dir: Path, out: Path, marker: Path, version: str | None = None) -> Path:
    """A copy of a real checkpoint whose weights file is a pickle that would create ``marker``."""
    shutil.copytree(model_dir, out)
    (out / "weights.pt").write_bytes(pickle.dumps({"state": _Touch(marker)}))
    if version:
        config = (out / "config.json").read_text()
        (out / "config.json").write_text(config.replace(checkpoint_version(model_dir), version))
    return out


def checkpoint_version(model_dir: Path) -> str:
    from model.checkpoint import read_meta

    return read_meta(model_dir).version


def test_the_code_running_payload_is_live(model_dir: Path, tmp_path: Path) -> None:
    """The control: plain unpickling of the same kind of payload does create its marker."""
    marker = tmp_path / "ran"
    bad = code_running_checkpoint(model_dir, tmp_path / "bad", marker)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
                    str(bad / "weights.pt")], check=True, timeout=60)
    assert marker.exists()


def test_tagger_serve_refuses_a_checkpoint_that_would_run_code(
        stream: Stream, start_worker: Callable[..., WorkerProcess], model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = code_running_checkpoint(model_dir, tmp_path / "bad", marker)
    line = one_line_error(start_worker(TAGGER_MODEL_DIR=str(bad)))
    assert "unsafe" in line and "weights.pt" in line
    assert not marker.exists()


def test_a_code_running_version_in_the_registry_is_never_swapped_in(
        stream: Stream, start_worker: Callable[..., WorkerProcess], model_dir: Path, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    registry.publish(model_dir)
    marker = tmp_path / "pwned"
    worker = start_worker(TAGGER_MODEL_DIR=str(registry.root))
    worker.wait_ready()
    registry.publish(code_running_checkpoint(model_dir, tmp_path / "bad", marker, version="evil-1"))
    wait_until(lambda: "cannot load model version evil-1" in worker.log_path.read_text(), 30, "the refusal")
    docs = stream.documents(20)
    stream.produce([value for _, value in docs])
    ids = [doc_id for doc_id, _ in docs]
    wait_until(lambda: len(tagged_ids(stream.redis_url, ids)) == len(ids), 60, "tagged by the old version")
    found = TagClient.from_url(stream.redis_url).lookup(ids[:1])[ids[0]]
    assert found is not None and found.model == checkpoint_version(model_dir)
    assert not marker.exists() and worker.process.poll() is None


# ---------------------------------------------------------------------------------------------- flood


def test_one_users_correction_flood_is_rate_limited_while_other_users_go_through(auth_redis: Service) -> None:
    settings = RedisSettings.from_sources({"TAGGER_REDIS_URL": f"redis://{auth_redis.address}/3",
                                           "TAGGER_REDIS_PASSWORD": PASSWORD})
    client = connect(settings)
    client.flushdb()
    TagWriter(client).write([TagRecord("flood-doc", [("crude", 0.9)], "oil", "docs", 0, 1, 1)], "v1")
    corrections = CorrectionClient(client, ["crude", "ship"], per_user_per_minute=10)
    minute = int(time.time() // 60)
    accepted = 0
    for _ in range(500):
        try:
            corrections.submit("flood-doc", ["ship"], [], "mallory")
            accepted += 1
        except CorrectionRejected as rejected:
            assert rejected.reason == "rate_limited"
    corrections.submit("flood-doc", ["ship"], [], "alice")  # another user is not held back
    same_minute = int(time.time() // 60) == minute
    assert accepted == 10 if same_minute else 10 <= accepted <= 20  # a fixed one-minute window
    assert int(client.hget(REJECTED, "rate_limited") or 0) == 500 - accepted
    client.flushdb()
