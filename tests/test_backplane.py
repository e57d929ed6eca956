"""The backplane: L1 coherence across instances over Redis pub/sub, on a real redis-server.

Caches in this process each have their own L1 and origin, so two managers on one Redis are
two instances; the coherence test runs three real processes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from hiercache import MISS, HierarchicalCacheManager
from redis_tools import config

SRC = str(Path(__file__).resolve().parents[1] / "src")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Block until ``condition()`` holds (checked every millisecond), or fail."""
    tick = threading.Event()
    for _ in range(int(timeout * 1000)):
        if condition():
            return
        tick.wait(0.001)
    raise AssertionError("condition not met in time")


def pair(url: str, **overrides: object) -> tuple[HierarchicalCacheManager, ...]:
    caches = tuple(
        HierarchicalCacheManager(config(url, telemetry_enabled=False, **overrides))
        for _ in range(2)
    )
    for cache in caches:
        cache.sync.initialize()
        assert cache.core.coherence is not None
        subscriber = cache.core.coherence.subscriber
        assert subscriber is not None
        assert subscriber.wait_up(10)
    return caches


@pytest.mark.parametrize("write_behind", [False, True])
def test_writes_deletes_and_invalidations_reach_the_other_l1(
    redis_url: str, write_behind: bool
) -> None:
    a, b = pair(redis_url, write_behind=write_behind)

    def received() -> int:
        return b.stats.total("backplane_received")

    def after_next_message(action: Callable[[], object]) -> None:
        """Run ``action`` on ``a``, then wait until ``b`` has applied every message ``a``
        published (write-behind may split one call into several batches)."""
        action()
        a.sync.flush()
        wait_until(lambda: received() >= a.stats.total("backplane_published"))

    try:
        after_next_message(
            lambda: (a.sync.set_many({"user:1": "old", "user:2": "old", "team:1": "old"}),)
        )
        assert b.sync.get_many(["user:1", "user:2", "team:1"]) == dict.fromkeys(
            ["user:1", "user:2", "team:1"], "old"
        )  # now in b's L1 too
        after_next_message(lambda: a.sync.set("user:1", "new"))
        assert b.l1.get("user:1") is None  # the message dropped b's copy
        assert b.sync.get("user:1") == "new"  # and the write had landed before it
        after_next_message(lambda: a.sync.delete("user:2"))
        assert b.l1.get("user:2") is None
        assert b.sync.get("user:2", MISS) is MISS
        assert b.sync.get("user:1") == "new"
        after_next_message(lambda: a.sync.invalidate_pattern("user:*"))
        assert b.l1.get("user:1") is None
        after_next_message(a.sync.clear)
        assert b.l1.get("team:1") is None
        assert b.stats.total("backplane_received") >= 4
        assert a.stats.total("backplane_published") >= 4
        assert b.core.gauges()["backplane.up"] == 1
    finally:
        a.sync.close()
        b.sync.close()


def test_an_instance_ignores_its_own_messages(redis_url: str) -> None:
    a, b = pair(redis_url, write_behind=False)
    try:
        a.sync.set("k", 1)
        wait_until(lambda: b.stats.total("backplane_received") >= 1)  # delivered by now
        assert a.l1.get("k") is not None  # a's own message did not drop its fresh value
        assert a.stats.total("backplane_received") == 0
    finally:
        a.sync.close()
        b.sync.close()


def test_a_read_that_started_before_an_invalidation_is_not_promoted(redis_url: str) -> None:
    a, _b = pair(redis_url, write_behind=False)
    try:
        a.sync.set("k", "old")
        a.l1.delete("k")
        fetched = a.l2.run(a.l2.op_get("k")) if a.l2 else None
        assert fetched is not None
        since = a.core.read_epoch()
        assert a.core.coherence is not None
        a.core.coherence.received({"o": "someone-else", "s": 1, "t": 0, "k": ["k"]})
        # The read's answer still goes to its caller, but L1 does not keep it.
        assert a.core.answer_from_l2("k", fetched, MISS, "get", since) == "old"
        assert a.l1.get("k") is None
        assert a.core.answer_from_l2("k", fetched, MISS, "get", a.core.read_epoch()) == "old"
        assert a.l1.get("k") is not None  # a read after the invalidation is promoted
    finally:
        a.sync.close()
        _b.sync.close()


def test_a_lost_link_resyncs_l1_once_it_is_back(redis_url: str) -> None:
    a, b = pair(redis_url, write_behind=False)
    admin = redis.Redis.from_url(redis_url)
    try:
        a.sync.set("k", "old")
        assert b.sync.get("k") == "old"
        assert b.core.coherence is not None
        subscriber = b.core.coherence.subscriber
        assert subscriber is not None
        admin.client_kill_filter(_type="pubsub")  # every subscription in this process
        wait_until(lambda: b.stats.total("backplane_resyncs") >= 1)
        assert subscriber.wait_up(10)
        assert b.l1.get("k") is None  # resynced: whatever was missed cannot be served
        a.sync.set("k", "new")  # after the reconnect: delivered again
        wait_until(lambda: b.l1.get("k") is None or b.sync.get("k") == "new")
        assert b.sync.get("k") == "new"  # 0 stale reads once the subscription is back
    finally:
        admin.close()
        a.sync.close()
        b.sync.close()


def test_a_link_down_too_long_bounds_staleness(redis_url: str) -> None:
    """While the link is down, L1 serves entries at most backplane_max_staleness_seconds."""
    cache = HierarchicalCacheManager(
        config(redis_url, telemetry_enabled=False, backplane_max_staleness_seconds=0.2)
    )
    try:
        cache.sync.set("k", 1)
        assert cache.core.coherence is not None
        cache.core.coherence.link_down()  # as the subscriber reports a lost link
        assert cache.l1.get("k") is not None  # still served right after the drop
        cache.core.coherence.subscriber = None  # the link stays down
        wait_until(lambda: cache.l1.get("k") is None, timeout=5)
    finally:
        cache.sync.close()


WRITER = textwrap.dedent(
    """
    import json, sys, time
    from hiercache import CacheConfig, HierarchicalCacheManager
    url, n = sys.argv[1], int(sys.argv[2])
    m = HierarchicalCacheManager(CacheConfig(redis_url=url, telemetry_enabled=False))
    m.sync.initialize()
    m.core.coherence.subscriber.wait_up(10)
    print("ready", flush=True)
    sys.stdin.readline()
    times = []
    for i in range(1, n + 1):
        m.sync.set("item", i)
        times.append(time.time())
        time.sleep(0.02)
    m.sync.flush()
    time.sleep(0.3)
    m.sync.set("done", True)
    m.sync.close()
    print(json.dumps(times), flush=True)
    """
)
READER = textwrap.dedent(
    """
    import json, sys, time
    from hiercache import CacheConfig, HierarchicalCacheManager
    url = sys.argv[1]
    m = HierarchicalCacheManager(CacheConfig(redis_url=url, telemetry_enabled=False))
    m.sync.initialize()
    m.core.coherence.subscriber.wait_up(10)
    m.sync.get("item")
    print("ready", flush=True)
    seen, last = [], None
    while not m.sync.get("done"):
        value = m.sync.get("item")
        if value != last:
            seen.append((time.time(), value))
            last = value
        time.sleep(0.0005)
    final = m.sync.get("item")
    m.sync.close()
    print(json.dumps({"seen": seen, "final": final}), flush=True)
    """
)


def test_three_processes_see_every_update_within_the_window(redis_url: str) -> None:
    n = 300
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def spawn(script: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, redis_url, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    readers = [spawn(READER) for _ in range(2)]
    writer = spawn(WRITER, str(n))
    assert writer.stdin is not None
    writer.stdin.write("go\n")
    writer.stdin.flush()
    times = json.loads(writer.communicate(timeout=120)[0].strip().splitlines()[-1])
    windows: list[float] = []
    for reader in readers:
        report = json.loads(reader.communicate(timeout=120)[0].strip().splitlines()[-1])
        assert report["final"] == n  # 0 updates left stale
        seen = report["seen"]
        for i, written_at in enumerate(times, start=1):
            first = next(t for t, v in seen if v is not None and v >= i)
            windows.append(max(0.0, first - written_at))
    windows.sort()
    p99 = windows[int(len(windows) * 0.99) - 1]
    print(
        f"\nbackplane staleness over {len(windows)} reads: median "
        f"{statistics.median(windows) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
        f"max {windows[-1] * 1000:.2f} ms"
    )
    assert p99 <= 0.020
    assert windows[-1] <= 0.050
