"""Real Redis topologies for tests: a 3-primary, 3-replica Cluster and a Sentinel setup.

Both are built from the ``redis-server`` binary on free loopback ports. Readiness (and
every failover a test waits for) is read from the servers' own log lines, never guessed
with a sleep: a ``LogWatch`` reads each process's output on a thread and wakes waiters.
"""

from __future__ import annotations

import asyncio
import ctypes
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hiercache import HierarchicalCacheManager
from servers import free_port, require_binary

#: How long a server may take to reach a state a test waits for (a failover included).
STATE_TIMEOUT = 60.0
SERVICE = "mymaster"


class LogWatch:
    """Every line a process printed, read on a thread; ``wait`` blocks until one matches."""

    def __init__(self, proc: subprocess.Popen[str], name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._done = False
        threading.Thread(target=self._read, daemon=True, name=f"log-{name}").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def mark(self) -> int:
        """A position: ``wait(..., after=mark)`` looks only at lines printed since."""
        with self._cond:
            return len(self.lines)

    def wait(
        self, match: str | Callable[[str], bool], after: int = 0, timeout: float = STATE_TIMEOUT
    ) -> str:
        """The first line since ``after`` containing ``match`` (or satisfying it)."""
        test = match if callable(match) else (lambda line: match in line)
        seen = after

        def found() -> str | None:
            nonlocal seen
            for line in self.lines[seen:]:
                seen += 1
                if test(line):
                    return line
            return None

        with self._cond:
            hit: list[str] = []

            def ready() -> bool:
                line = found()
                if line is not None:
                    hit.append(line)
                return bool(hit) or self._done

            self._cond.wait_for(ready, timeout)
            if hit:
                return hit[0]
            tail = "".join(self.lines[-30:])
        state = "exited" if self._done else f"did not print it within {timeout:g}s"
        raise RuntimeError(f"{self.name}: waited for {match!r}, but it {state}:\n{tail}")

    def wait_count(self, match: str, n: int, after: int = 0) -> None:
        """Block until ``n`` lines since ``after`` contain ``match``."""
        seen = 0

        def nth(line: str) -> bool:
            nonlocal seen
            seen += match in line
            return seen >= n

        self.wait(nth, after)


@dataclass
class Node:
    """One redis-server (or sentinel) process; ``kill`` and ``start`` keep its port and dir."""

    port: int
    workdir: Path
    args: list[str]
    name: str
    proc: subprocess.Popen[str] | None = None
    log: LogWatch | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, ready: str = "Ready to accept connections") -> None:
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent,
        )
        self.log = LogWatch(self.proc, self.name)
        self.log.wait(ready)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the cluster or the sentinels."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def die_with_parent() -> None:
    """In the child: on Linux, SIGTERM it when the test process dies, even by SIGKILL, so no
    server outlives an interrupted session (elsewhere the fixtures' cleanup does it). Linux
    ties it to the thread that started the server: start servers from the main thread."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port that leaves its cluster bus port (+10000) free too, and at most 55535."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port


def _redis_args(binary: str, port: int, workdir: Path, *extra: str) -> list[str]:
    return [
        binary,
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--logfile", "", "--loglevel", "notice",
        *extra,
    ]  # fmt: skip


def _node(binary: str, root: Path, name: str, *extra: str, port: int = 0) -> Node:
    port = port or free_port()
    workdir = root / name
    workdir.mkdir()
    return Node(port, workdir, _redis_args(binary, port, workdir, *extra), f"{name}:{port}")


@dataclass
class Cluster:
    nodes: list[Node]
    cli: str

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes[:3])

    def by_address(self, address: str) -> Node:
        return next(n for n in self.nodes if n.address == address)

    def run_cli(self, *args: str) -> str:
        done = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, timeout=STATE_TIMEOUT, check=True
        )
        return done.stdout

    def roles(self, seen_by: Node | None = None) -> dict[str, str]:
        """address -> "master" or "slave", as ``seen_by`` (or any live node) reports it."""
        roles = {}
        for cols in self._nodes_table(seen_by):
            flags = cols[2].split(",")
            if "fail" in flags or "fail?" in flags:
                continue
            roles[cols[1].split("@")[0]] = "master" if "master" in flags else "slave"
        return roles

    def _nodes_table(self, seen_by: Node | None = None) -> list[list[str]]:
        node = seen_by or next(n for n in self.nodes if n.running)
        out = self.run_cli("-p", str(node.port), "cluster", "nodes")
        return [row.split() for row in out.splitlines()]

    def replica_of(self, primary: Node) -> Node:
        """The replica that follows ``primary``."""
        rows = self._nodes_table()
        primary_id = next(r[0] for r in rows if r[1].split("@")[0] == primary.address)
        return next(self.by_address(r[1].split("@")[0]) for r in rows if r[3] == primary_id)

    def slots_of(self, primary: Node) -> set[int]:
        """The hash slots ``primary`` serves."""
        row = next(r for r in self._nodes_table() if r[1].split("@")[0] == primary.address)
        slots: set[int] = set()
        for part in row[8:]:
            start, _, end = part.partition("-")
            slots.update(range(int(start), int(end or start) + 1))
        return slots

    def rejoin(self, node: Node) -> None:
        """Restart a killed node: it rejoins (as a replica) and syncs its primary's data."""
        if node.running:
            return
        node.start()
        assert node.log is not None
        node.log.wait("MASTER <-> REPLICA sync: Finished with success")

    def primaries(self) -> list[Node]:
        return [self.by_address(a) for a, r in sorted(self.roles().items()) if r == "master"]


@contextmanager
def run_cluster() -> Iterator[Cluster]:
    """Six redis-servers joined by ``redis-cli --cluster create --cluster-replicas 1``."""
    binary = require_binary("redis-server", "redis-server")
    cli = require_binary("redis-cli", "redis-tools")
    with tempfile.TemporaryDirectory(prefix="hiercache-cluster-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        nodes = [
            _node(
                binary,
                root,
                f"node{i}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--cluster-replica-validity-factor",
                "0",
                port=cluster_port(),
            )
            for i in range(6)
        ]
        for node in nodes:
            stack.callback(node.stop)
            node.start()
        cluster = Cluster(nodes, cli)
        marks = [n.log.mark() for n in nodes if n.log is not None]
        cluster.run_cli(
            "--cluster", "create", *(n.address for n in nodes),
            "--cluster-replicas", "1", "--cluster-yes",
        )  # fmt: skip
        for node, mark in zip(nodes, marks):
            assert node.log is not None
            node.log.wait("Cluster state changed: ok", after=mark)
        for address, role in cluster.roles().items():  # every replica has its data stream
            node = cluster.by_address(address)
            if role == "slave" and node.log is not None:
                node.log.wait("MASTER <-> REPLICA sync: Finished with success")
        yield cluster


@dataclass
class SentinelSetup:
    primary: Node
    replica: Node
    sentinels: list[Node]
    password: str
    service: str = SERVICE
    history: list[str] = field(default_factory=list)

    def url(self, db: int = 0) -> str:
        hosts = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.service}/{db}"

    @property
    def data_nodes(self) -> list[Node]:
        return [self.primary, self.replica]

    def by_address(self, address: str) -> Node:
        return next(n for n in self.data_nodes if n.address == address)

    def master_address(self) -> str:
        """The primary's address, as the first sentinel reports it."""
        port = str(self.sentinels[0].port)
        out = subprocess.run(
            ["redis-cli", "-p", port, "sentinel", "get-master-addr-by-name", self.service],
            capture_output=True, text=True, timeout=STATE_TIMEOUT, check=True,
        ).stdout.split()  # fmt: skip
        return f"{out[0]}:{out[1]}"

    def marks(self) -> list[int]:
        return [s.log.mark() if s.log is not None else 0 for s in self.sentinels]

    def wait_switch(self, marks: list[int]) -> tuple[str, float]:
        """Once every sentinel has announced the failover: the new primary's address, and
        when the first of them did (wall clock, from the log line's own timestamp)."""
        lines = []
        for sentinel, mark in zip(self.sentinels, marks):
            assert sentinel.log is not None
            lines.append(sentinel.log.wait(f"+switch-master {self.service}", after=mark))
        host, port = lines[0].split()[-2:]
        return f"{host}:{port}", min(logged_at(line) for line in lines)


def logged_at(line: str) -> float:
    """The wall-clock time of a redis-server log line ("pid:X 02 Dec 2026 13:22:01.775 ...")."""
    day, month, year, clock = line.split()[1:5]
    whole, _, millis = clock.partition(".")
    stamp = time.mktime(time.strptime(f"{day} {month} {year} {whole}", "%d %b %Y %H:%M:%S"))
    return stamp + int(millis or 0) / 1000


@contextmanager
def run_sentinel(password: str = "data-secret") -> Iterator[SentinelSetup]:
    """A primary, its replica and 3 sentinels (quorum 2, down-after-milliseconds 1000)."""
    binary = require_binary("redis-server", "redis-server")
    with tempfile.TemporaryDirectory(prefix="hiercache-sentinel-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        auth = ("--requirepass", password, "--masterauth", password)
        primary = _node(binary, root, "primary", *auth)
        stack.callback(primary.stop)
        primary.start()
        replica = _node(
            binary, root, "replica", *auth, "--replicaof", "127.0.0.1", str(primary.port)
        )
        stack.callback(replica.stop)
        replica.start()
        assert replica.log is not None
        replica.log.wait("MASTER <-> REPLICA sync: Finished with success")
        sentinels = []
        for i in range(3):
            port = free_port()
            workdir = root / f"sentinel{i}"
            workdir.mkdir()
            conf = workdir / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                f"sentinel auth-pass {SERVICE} {password}\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            node = Node(port, workdir, [binary, str(conf), "--sentinel"], f"sentinel{i}:{port}")
            stack.callback(node.stop)
            node.start(ready=f"+monitor master {SERVICE}")
            sentinels.append(node)
        for node in sentinels:  # each knows the replica and both other sentinels
            assert node.log is not None
            node.log.wait(f"+slave slave {replica.address}")
            node.log.wait_count("+sentinel sentinel", 2)
        yield SentinelSetup(primary, replica, sentinels, password)


class Load:
    """Callers hammering one cache from a thread (asyncio) and a thread (sync) until told
    to stop; every exception that reaches a caller is kept."""

    def __init__(self, m: HierarchicalCacheManager) -> None:
        self.m = m
        self.stop = threading.Event()
        self.exceptions: list[BaseException] = []
        self.ops = 0
        self.threads = [
            threading.Thread(target=lambda: asyncio.run(self._async_callers())),
            threading.Thread(target=self._sync_caller),
        ]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    async def _async_callers(self) -> None:
        await asyncio.gather(*(self._async_caller(w) for w in range(4)))

    async def _async_caller(self, worker: int) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"load:{worker}:{i % 200}"
            try:
                await self.m.set(key, i)
                await self.m.get(key)
                await self.m.get_many([f"load:{worker}:{j}" for j in range(i % 200, i % 200 + 10)])
                if i % 50 == 0:
                    await self.m.delete(key)
            except Exception as exc:  # what a caller would see
                self.exceptions.append(exc)
            self.ops += 1
            i += 1
            await asyncio.sleep(0)  # let the other callers of this loop run

    def _sync_caller(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                self.m.sync.set(f"sync:{i % 300}", i)
                self.m.sync.get_many([f"sync:{j}" for j in range(i % 300, i % 300 + 10)])
            except Exception as exc:
                self.exceptions.append(exc)
            i += 1


__all__ = [
    "Cluster",
    "Load",
    "LogWatch",
    "Node",
    "SentinelSetup",
    "logged_at",
    "run_cluster",
    "run_sentinel",
]
