"""Real servers for tests: a ``redis-server`` on a free loopback port.

Readiness is read from the server's own log line, never guessed with a sleep.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH. Install it with `apt-get install -y {package}` "
            "(the README's test command does this for you).",
            pytrace=False,
        )
    return path


def wait_for_line(proc: subprocess.Popen[str], marker: str, what: str) -> None:
    """Block until ``marker`` appears on the process's output (or it exits)."""
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return
    raise RuntimeError(f"{what} exited before it was ready:\n{''.join(seen[-30:])}")


def drain_in_background(proc: subprocess.Popen[str]) -> None:
    """Keep reading a server's log so it never blocks on a full pipe."""
    assert proc.stdout is not None
    stream = proc.stdout
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


@dataclass
class RedisServer:
    host: str
    port: int
    password: str | None
    proc: subprocess.Popen[str]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (to test outages); the fixture restarts nothing."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextmanager
def run_redis(
    password: str | None = None,
    port: int | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[RedisServer]:
    """A private redis-server; ``tls=(cert_chain_pem, key_pem)`` serves TLS only."""
    binary = require_binary("redis-server", "redis-server")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="hiercache-redis-") as workdir:
        listen = ["--port", str(port)]
        if tls is not None:
            listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
            listen += ["--tls-cert-file", str(tls[0]), "--tls-key-file", str(tls[1])]
        args = [
            binary,
            *listen,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--logfile",
            "",
            "--loglevel",
            "notice",
        ]
        if password:
            args += ["--requirepass", password]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for_line(proc, "Ready to accept connections", "redis-server")
            drain_in_background(proc)
            yield RedisServer("127.0.0.1", port, password, proc)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


__all__ = [
    "RedisServer",
    "drain_in_background",
    "free_port",
    "require_binary",
    "run_redis",
    "wait_for_line",
]
