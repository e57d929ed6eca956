"""Clean shutdown of a plain process, with a real SIGTERM sent to a real child process that
writes through a real redis-server (behind the fault proxy, to slow or cut it off)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import redis

from redis_tools import PREFIX
from test_write_behind import count_keys, stored

if TYPE_CHECKING:  # imported at run time by pytest_plugins only, so pytest can rewrite it
    from tcp_proxy import TcpProxy

pytest_plugins = ["tcp_proxy"]

CHILD = r"""
import logging, signal, sys
from hiercache import CacheConfig, HierarchicalCacheManager
from hiercache.shutdown import install_sigterm_flush

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
url, n, previous, drain = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
if previous == "python":
    def on_sigterm(signum, frame):
        print("the previous handler ran", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, on_sigterm)
cache = HierarchicalCacheManager(CacheConfig(
    redis_url=url, write_behind_drain_seconds=drain, l2_operation_timeout_seconds=0.2,
    l2_connect_timeout_seconds=0.2, telemetry_enabled=False,
))
install_sigterm_flush(cache)
for i in range(n):
    cache.sync.set(f"item:{i}", i, ttl_seconds=600)
print("ready", cache.write_behind.unsent, flush=True)
while True:
    signal.pause()
"""


def run_child(url: str, n: int, previous: str = "default", drain: float = 5.0) -> Child:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(n), previous, str(drain)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return Child(proc)


class Child:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def wait_ready(self) -> int:
        """Block until the child has made its sets; returns how many were still unsent."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.proc.kill()
            raise AssertionError(f"child not ready: {line!r} {self.proc.communicate()[1]}")
        return int(line.split()[1])

    def terminate(self) -> tuple[int, str, str, float]:
        """Send SIGTERM; returns the exit code, stdout, stderr and seconds until exit."""
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err, time.perf_counter() - started


def test_sigterm_after_10000_sets_loses_none(redis_proxy: TcpProxy, raw: redis.Redis) -> None:
    """Redis is slowed down (100 ms a reply) so that most writes are still queued when the
    SIGTERM comes: without the helper, SIGTERM's default action killed them with the process."""
    redis_proxy.delay(100)
    child = run_child(redis_proxy.url, 10_000)
    unsent = child.wait_ready()
    assert unsent > 0  # the drain has work to do
    code, _, err, _ = child.terminate()
    assert code == -signal.SIGTERM, err  # then SIGTERM's default action: 128 + 15 in a shell
    assert count_keys(raw, PREFIX + "item:*") == 10_000
    assert stored(raw, "item:9999") == 9999
    assert "(0 writes left unsent)" in err


def test_sigterm_chains_the_previous_handler(redis_url: str, raw: redis.Redis) -> None:
    child = run_child(redis_url, 100, previous="python")
    child.wait_ready()
    code, out, err, _ = child.terminate()
    assert code == 3, err  # the previous handler's sys.exit(3)
    assert "the previous handler ran" in out
    assert count_keys(raw, PREFIX + "item:*") == 100


def test_with_redis_cut_off_the_drain_is_bounded_and_what_is_left_is_counted(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    redis_proxy.blackhole()
    child = run_child(redis_proxy.url, 1_000, drain=1.0)
    assert child.wait_ready() == 1_000  # held: the breaker opened at the start-up ping
    code, _, err, seconds = child.terminate()
    assert code == -signal.SIGTERM, err
    # within the 1 s drain bound (plus at most one 0.2 s operation timeout), never hung
    assert 1.0 <= seconds < 5, seconds
    assert "1000 write-behind writes not sent at shutdown" in err
    assert "(1000 writes left unsent)" in err
    assert err.count("not sent at shutdown") == 1
    assert "shutdown=" not in err  # one line, not also a drop summary
    assert count_keys(raw) == 0


def test_an_ignored_sigterm_stays_ignored_after_the_drain(redis_url: str, raw: redis.Redis) -> None:
    code = """
import os, signal
from hiercache import CacheConfig, HierarchicalCacheManager
from hiercache.shutdown import install_sigterm_flush
signal.signal(signal.SIGTERM, signal.SIG_IGN)
cache = HierarchicalCacheManager(CacheConfig(redis_url=URL, telemetry_enabled=False))
uninstall = install_sigterm_flush(cache)
cache.sync.set("k", 1)
os.kill(os.getpid(), signal.SIGTERM)  # drained, then ignored: the process goes on
print("alive")
uninstall()
assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
""".replace("URL", repr(redis_url))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alive"
    assert stored(raw, "k") == 1
