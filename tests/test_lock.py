"""The cross-process stampede lock (``lock=True`` / ``distributed_lock``), with real
processes on a real redis-server: N processes missing one key make one backend call, and a
lock holder killed with SIGKILL delays the others by at most ``lock_timeout_seconds``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis

from redis_tools import PREFIX

SRC = str(Path(__file__).resolve().parents[1] / "src")

#: One worker: waits for "go" on stdin, then get_or_load with the lock. The loader counts
#: its calls in Redis (a key outside the cache's prefix) and takes a while, as a real
#: backend does, so the other processes find the lock held.
WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    import redis
    from hiercache import CacheConfig, HierarchicalCacheManager

    url, api, hold = sys.argv[1], sys.argv[2], sys.argv[3]
    counter = redis.Redis.from_url(url)
    config = CacheConfig(redis_url=url, write_behind=True, telemetry_enabled=False,
                         lock_timeout_seconds=float(sys.argv[4]))

    def load():
        counter.incr("test:loads")
        print("loading", flush=True)
        if hold == "forever":
            sys.stdin.readline()  # never answered: the test kills this process
        time.sleep(float(hold))
        return {"answer": 42}

    m = HierarchicalCacheManager(config)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    if api == "async":
        async def main():
            try:
                return await m.get_or_load("hot", load, 60, lock=True)
            finally:
                await m.close()
        value = asyncio.run(main())
    else:
        value = m.sync.get_or_load("hot", load, 60, lock=True)
        m.sync.close()
    print("value", value, round(time.monotonic() - started, 3), flush=True)
    """
)


def start(url: str, api: str, hold: str, lock_timeout: float = 5.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, api, hold, str(lock_timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def result(proc: subprocess.Popen[str]) -> tuple[str, float]:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    line = next(x for x in out.splitlines() if x.startswith("value "))
    *value, seconds = line.split(" ", 1)[1].rsplit(" ", 1)
    return value[0], float(seconds)


def test_four_processes_missing_one_key_make_one_backend_call(
    redis_url: str, raw: redis.Redis
) -> None:
    procs = [start(redis_url, api, "0.3") for api in ("async", "sync", "async", "sync")]
    for proc in procs:
        go(proc)
    values = [result(proc)[0] for proc in procs]
    assert values == ["{'answer': 42}"] * 4
    assert int(raw.get("test:loads") or 0) == 1  # one backend call for four processes
    assert raw.exists(PREFIX + "hot") == 1  # written through before the lock was released
    assert not list(raw.scan_iter(match=PREFIX + "lock:*"))  # released


def test_a_killed_lock_holder_delays_the_others_by_at_most_the_lease(
    redis_url: str, raw: redis.Redis
) -> None:
    lease = 1.0
    holder = start(redis_url, "sync", "forever", lock_timeout=lease)
    go(holder)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "loading"  # it holds the lock now
    waiter = start(redis_url, "async", "0", lock_timeout=lease)
    killed_at = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    go(waiter)
    value, waited = result(waiter)
    assert value == "{'answer': 42}"
    assert waited < lease + 1.0  # the lease ran out and the waiter loaded: not a hang
    assert time.monotonic() - killed_at < lease + 5
    assert int(raw.get("test:loads") or 0) == 2  # the killed holder's call, and the waiter's
