"""Redis outages and credentials, against real redis-servers: nothing raises into the
caller, errors are counted by type, and a password never shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis

from fakes import FakeClock
from hiercache import MISS, CacheConfig, HierarchicalCacheManager, cache_operation
from servers import free_port, run_redis

PASSWORD = "pw-S3cr3t-9b1f7e"


async def put(m: HierarchicalCacheManager, api: str, key: str) -> None:
    """``set`` through the async or the sync API."""
    if api == "async":
        await m.set(key, key)
    else:
        m.sync.set(key, key)


def warnings_about_redis(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hiercache" and r.levelno == logging.WARNING and "Redis" in r.getMessage()
    ]


async def exercise_async(m: HierarchicalCacheManager) -> dict[str, Any]:
    """Every async operation once; returns what they answered."""
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        return "loaded"

    @cache_operation(cache_key="decorated", ttl_seconds=60, cache=m)
    async def decorated(x: int) -> int:
        return x * 2

    await m.set("a", 1)
    await m.set_many({"b": 2, "c": 3})
    return {
        "get": await m.get("a"),
        "get_miss": await m.get("nope", MISS),
        "get_many": await m.get_many(["a", "b", "c", "nope"]),
        "exists": await m.exists("b"),
        "exists_miss": await m.exists("nope"),
        "delete": await m.delete("c"),
        "invalidate": await m.invalidate_pattern("b*"),
        "get_or_load": await m.get_or_load("loaded", load),
        "get_or_load_again": await m.get_or_load("loaded", load),
        "loads": loads,
        "decorated": await decorated(21),
        "decorated_again": await decorated(21),
        "invalidate_decorated": await decorated.invalidate(21),  # type: ignore[attr-defined]
        "warm": await m.warm_cache(["w1", "w2"], lambda k: k),
        "clear": await m.clear(),
    }


EXPECTED_L1_ONLY = {
    "get": 1,
    "get_miss": MISS,
    "get_many": {"a": 1, "b": 2, "c": 3},
    "exists": True,
    "exists_miss": False,
    "delete": True,
    "invalidate": 1,
    "get_or_load": "loaded",
    "get_or_load_again": "loaded",
    "loads": 1,
    "decorated": 42,
    "decorated_again": 42,
    "invalidate_decorated": True,
    "warm": 2,
    "clear": 4,  # a, loaded, w1, w2
}


async def test_unreachable_at_start_runs_l1_only_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hiercache")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = CacheConfig(redis_url=url, l2_connect_timeout_seconds=0.5)
    m = HierarchicalCacheManager(config, clock=FakeClock())  # no retry interval passes
    try:
        assert await exercise_async(m) == EXPECTED_L1_ONLY
        # the sync API on the same manager neither raises nor warns again
        m.sync.set("s", "sync")
        assert m.sync.get("s") == "sync"
        assert m.sync.get_many(["s", "nope"]) == {"s": "sync"}
        assert m.sync.exists("s")
        assert m.sync.delete("s")
        assert m.sync.invalidate_pattern("*") == 0
        s = await m.get_statistics()
        assert s["l2_redis"]["available"] is False
        # one start-up ping, shared by both APIs; no call after it tries L2
        assert s["l2_redis"]["errors"]["connection"] == 1
        assert s["l2_redis"]["backend"] == url
    finally:
        await m.close()
    warned = warnings_about_redis(caplog)
    assert len(warned) == 1, warned
    assert "Redis not available" in warned[0]
    assert url in warned[0]


def test_unreachable_at_start_sync_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hiercache")
    m = HierarchicalCacheManager(CacheConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    m.sync.set("k", 1)
    assert m.sync.get("k") == 1
    assert m.sync.get("other", MISS) is MISS
    assert m.sync.get_or_load("loaded", lambda: "v") == "v"
    m.sync.close()
    assert len(warnings_about_redis(caplog)) == 1


async def test_redis_stopped_mid_flight_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hiercache")
    with run_redis() as server:
        m = HierarchicalCacheManager(CacheConfig(redis_url=server.url, write_behind=False))
        try:
            await m.set("kept", "kept in L1")
            await m.set("l2-only", "gone with the server")
            m.l1.delete("l2-only")
            assert (await m.get_statistics())["l2_redis"]["available"] is True
            server.stop()

            assert await m.get("kept") == "kept in L1"  # L1 still answers
            assert await m.get("l2-only", MISS) is MISS  # L2 is down: a miss, not an error
            assert await exercise_async(m) == {**EXPECTED_L1_ONLY, "clear": 5}  # + kept
            # the sync API on the same manager
            m.sync.set("s", 1)
            assert m.sync.get("s") == 1
            assert m.sync.get("l2-only", MISS) is MISS
            assert m.sync.get_many(["s", "l2-only"]) == {"s": 1}
            assert m.sync.delete("s")
            assert m.sync.invalidate_pattern("*") == 0

            s = await m.get_statistics()
            assert s["l2_redis"]["available"] is False
            errors = s["l2_redis"]["errors"]
            # The breaker opened after l2_breaker_failures errors in a row: from then on L2
            # was skipped, so the errors stop there (plus the background prober's pings).
            assert errors["connection"] >= m.config.l2_breaker_failures
            assert m.core.health.opened == 1
            assert errors["timeout"] == errors["other"] == errors["corrupt"] == 0
            assert s["requests"] > 0
        finally:
            await m.close()
    assert warnings_about_redis(caplog)  # the outage was logged
    assert len(warnings_about_redis(caplog)) <= 2  # once per client, not once per call


async def test_write_behind_during_an_outage_holds_writes_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Writes made while Redis is down are held (see test_write_behind for their delivery
    after recovery); a shutdown before it comes back drops them, counted and logged once."""
    caplog.set_level(logging.WARNING, logger="hiercache")
    with run_redis() as server:
        m = HierarchicalCacheManager(
            CacheConfig(redis_url=server.url, write_behind=True, write_behind_drain_seconds=0.2)
        )
        try:
            await m.set("up", 1)
            await m.flush()
            server.stop()
            await m.set_many({f"k:{i}": i for i in range(20)})
            await m.flush()  # returns once the breaker is open: held writes wait
            assert await m.get("k:3") == 3  # L1 has it
            s = await m.get_statistics()
            assert s["write_behind"]["dropped"] == 0
            assert m.write_behind is not None
            assert m.write_behind.unsent == 20
            assert s["l2_redis"]["errors"]["connection"] >= 1
        finally:
            await m.close()  # flushing into a dead Redis does not raise either
        s = await m.get_statistics()
        assert s["write_behind"]["dropped_by_reason"]["shutdown"] == 20
    assert sum("not sent at shutdown" in w for w in warnings_about_l2(caplog)) == 1


def warnings_about_l2(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hiercache" and r.levelno == logging.WARNING and "L2" in r.getMessage()
    ]


# -- credentials ----------------------------------------------------------------------------
Factory = Callable[[str, int], CacheConfig]


def by_password(host: str, port: int) -> CacheConfig:
    return CacheConfig(
        redis_host=host, redis_port=port, redis_password=PASSWORD, write_behind=False
    )


def by_url(host: str, port: int) -> CacheConfig:
    return CacheConfig(redis_url=f"redis://:{PASSWORD}@{host}:{port}/0", write_behind=False)


@pytest.mark.parametrize("make", [by_password, by_url], ids=["redis_password", "url"])
async def test_password_protected_redis_works_and_the_password_never_shows(
    make: Factory, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="hiercache")
    with run_redis(password=PASSWORD) as server:
        cfg = make(server.host, server.port)
        m = HierarchicalCacheManager(cfg)
        cold = HierarchicalCacheManager(make(server.host, server.port))
        try:
            await m.set("k", {"v": 1})
            assert await cold.get("k") == {"v": 1}  # through the authenticated L2
            assert m.sync.get("k") == {"v": 1}
            raw = redis.Redis(host=server.host, port=server.port, password=PASSWORD)
            assert raw.exists("hiercache:k") == 1
            raw.close()
            stats = await m.get_statistics()
            assert stats["l2_redis"]["available"] is True
            assert stats["l2_redis"]["backend"] == f"redis://{server.host}:{server.port}/0"
            shown = [repr(m), repr(cfg), str(cfg), repr(m.l2), str(stats), caplog.text]
            shown.append(str(cfg.model_dump()))
            for text in shown:
                assert PASSWORD not in text
        finally:
            await m.close()
            await cold.close()
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err


@pytest.mark.parametrize("make", [by_password, by_url], ids=["redis_password", "url"])
async def test_wrong_password_runs_l1_only_without_leaking_it(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hiercache")
    with run_redis(password="the-real-one-7c2d") as server:
        m = HierarchicalCacheManager(make(server.host, server.port))
        try:
            await m.set("k", 1)
            assert await m.get("k") == 1
            assert await m.get("other", MISS) is MISS
            s = await m.get_statistics()
            assert s["l2_redis"]["available"] is False
            assert sum(s["l2_redis"]["errors"].values()) >= 1
        finally:
            await m.close()
    assert len(warnings_about_redis(caplog)) == 1
    assert PASSWORD not in caplog.text
    assert "the-real-one-7c2d" not in caplog.text


@pytest.mark.parametrize("api", ["async", "sync"])
async def test_redis_that_comes_back_is_used_again_after_the_retry_interval(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hiercache")
    port = free_port()
    clock = FakeClock()
    config = CacheConfig(
        redis_url=f"redis://127.0.0.1:{port}/0", write_behind=False, l2_breaker_open_seconds=5
    )
    m = HierarchicalCacheManager(config, clock=clock)
    try:
        await put(m, api, "before")  # Redis is down: L1 only
        with run_redis(port=port) as server:
            raw = redis.Redis.from_url(server.url)
            await put(m, api, "too-soon")  # up, but the breaker is still open: not probed
            assert raw.exists("hiercache:too-soon") == 0
            assert not m.core.health.live
            clock.now += 5
            # The prober (not a caller) pings now, in the background, and closes the breaker.
            assert await asyncio.to_thread(m.core.health.wait_live, 10)
            await put(m, api, "after")  # live again: written through to Redis
            assert raw.exists("hiercache:after") == 1
            s = await m.get_statistics()
            assert s["l2_redis"]["available"] is True
            assert s["l2_redis"]["errors"]["connection"] == 1  # the start-up ping only
            assert m.core.health.opened == 1
            raw.close()
        messages = warnings_about_redis(caplog)
        assert len(messages) == 2
        assert "not available" in messages[0]
        assert "available again" in messages[1]
    finally:
        await m.close()


async def test_a_stalled_redis_times_out_into_a_miss() -> None:
    """A Redis that stops answering (CLIENT PAUSE) costs the operation timeout, then a miss."""
    with run_redis() as server:
        config = CacheConfig(
            redis_url=server.url, write_behind=False, l2_operation_timeout_seconds=0.2
        )
        m = HierarchicalCacheManager(config)
        try:
            await m.set("k", "v")
            m.l1.delete("k")
            admin = redis.Redis.from_url(server.url)
            admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
            assert await m.get("k", MISS) is MISS  # stalled: the read times out
            assert m.sync.get("k", MISS) is MISS
            admin.execute_command("CLIENT", "UNPAUSE")
            s = await m.get_statistics()
            assert s["l2_redis"]["errors"]["timeout"] == 2
            assert s["l2_redis"]["errors"]["connection"] == 0
            assert await m.get("k") == "v"  # Redis answers again: an L2 hit
            admin.close()
        finally:
            await m.close()


@pytest.mark.parametrize("api", ["async", "sync"])
async def test_a_redis_restart_costs_no_error_thanks_to_one_reconnect(api: str) -> None:
    """Pooled connections cut by a restart are retried once, on a fresh connection."""
    port = free_port()
    config = CacheConfig(redis_url=f"redis://127.0.0.1:{port}/0", write_behind=False)
    m = HierarchicalCacheManager(config)
    try:
        with run_redis(port=port):
            await put(m, api, "first")  # opens a pooled connection
        with run_redis(port=port) as again:
            await put(m, api, "second")  # the pooled connection is dead: one reconnect, no error
            raw = redis.Redis.from_url(again.url)
            assert raw.exists("hiercache:second") == 1
            raw.close()
        s = await m.get_statistics()
        assert s["l2_redis"]["errors"]["connection"] == 0
        assert s["l2_redis"]["available"] is True
    finally:
        await m.close()
