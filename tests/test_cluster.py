"""hiercache on a real Redis Cluster: 3 primaries and 3 replicas made by ``redis-cli --cluster``.

Every API, sync and async, across slots; errors typed; a primary SIGKILLed under load.
The cluster is started once per session (``cluster`` below) and shared by these tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.crc
from redis.cluster import RedisCluster

from cluster_servers import Cluster, Load, logged_at, run_cluster
from hiercache import MISS, HierarchicalCacheManager
from hiercache.l2_errors import error_type
from hiercache.redis_tier import RedisCacheBackend
from hiercache.settings import CacheConfig
from hiercache.topology import as_cluster_error, key_slot, next_cursor, slot_groups, split_cursor

N = 1000
PREFIX = "hiercache:"


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with run_cluster() as c:
        yield c


@pytest.fixture
def raw(cluster: Cluster) -> Iterator[RedisCluster]:
    """A plain redis-py cluster client, the cluster emptied before each test."""
    client = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()


def make(cluster: Cluster, **overrides: Any) -> HierarchicalCacheManager:
    values: dict[str, Any] = {
        "redis_url": cluster.url,
        "write_behind": False,
        "telemetry_enabled": False,
    }
    values.update(overrides)
    return HierarchicalCacheManager(CacheConfig(**values))


def stored_keys(raw: RedisCluster, match: str = "*") -> dict[str, set[bytes]]:
    """Every key on every primary, by primary: what the cluster really holds."""
    found: dict[str, set[bytes]] = {}
    for node in raw.get_primaries():
        found[node.name] = set(raw.scan_iter(match=match, count=1000, target_nodes=node))
    return found


def all_stored(raw: RedisCluster, match: str = "*") -> set[bytes]:
    return set().union(*stored_keys(raw, match).values())


def errors(m: HierarchicalCacheManager) -> dict[str, int]:
    counted = m.sync.get_statistics()["l2_redis"]["errors"]
    return {kind: n for kind, n in counted.items() if n}


def keys_and_values() -> dict[str, Any]:
    return {f"user:{i}": {"id": i, "name": f"n{i}"} for i in range(N)}


def test_the_url_seeds_from_any_node_and_names_the_cluster(cluster: Cluster) -> None:
    config = CacheConfig(redis_url=cluster.url)
    assert config.redis_target == cluster.url
    assert RedisCacheBackend(config).cluster


def test_keys_of_one_get_many_span_many_slots() -> None:
    """The premise of the tests below: 1,000 keys spread over all three primaries' slots."""
    groups = slot_groups([PREFIX + k for k in keys_and_values()])
    assert len(groups) > 900
    assert sorted(i for g in groups for i in g) == list(range(N))


def test_key_slot_matches_redis_py_on_keys_with_and_without_hash_tags() -> None:
    rng = random.Random(7)
    alphabet = b"ab{}:\xff0"
    keys = [bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))) for _ in range(20_000)]
    keys += [b"user:{42}:profile", b"{}x", b"{{a}}", b"a{b}c{d}", b"{"]
    assert [key_slot(k) for k in keys] == [redis.crc.key_slot(k) for k in keys]


def test_a_cluster_wide_scan_cursor_walks_every_primary_once() -> None:
    seen, cursor = [], 0
    replies = {0: [5, 0], 1: [0], 2: [9, 3, 0]}  # each primary's own cursors, in turn
    while True:
        index, node_cursor = split_cursor(cursor)
        seen.append((index, node_cursor))
        after = replies[index].pop(0)
        cursor = next_cursor(index, after, primaries=3)
        if cursor == 0:
            break
    assert seen == [(0, 0), (0, 5), (1, 0), (2, 0), (2, 9), (2, 3)]


def test_only_redis_pys_own_quirks_become_topology_errors() -> None:
    try:
        None.attribute  # type: ignore[attr-defined]  # noqa: B018 - a bug in our own code
    except AttributeError as exc:
        with pytest.raises(AttributeError):
            as_cluster_error(exc)
    assert as_cluster_error(ValueError("x")).__class__ is ValueError
    try:
        redis.crc.key_slot(42)  # type: ignore[arg-type]  # raised inside redis-py
    except AttributeError as exc:
        typed = as_cluster_error(exc)
    assert isinstance(typed, redis.exceptions.RedisClusterException)
    assert error_type(typed) == "topology"


async def test_every_async_api_across_slots(cluster: Cluster, raw: RedisCluster) -> None:
    data = keys_and_values()
    names = list(data)
    writer, reader = make(cluster), make(cluster, hierarchical_caching=False)
    try:
        for key in names[:500]:
            await writer.set(key, data[key])
        for start in range(500, N, 100):
            await writer.set_many({k: data[k] for k in names[start : start + 100]})
        by_node = stored_keys(raw)
        assert sum(len(keys) for keys in by_node.values()) == N
        assert all(len(keys) > 250 for keys in by_node.values()), "keys on every primary"

        for key in names[:200]:  # L2 reads (the reader promotes nothing into L1)
            assert await reader.get(key) == data[key]
        for start in range(0, N, 100):
            chunk = names[start : start + 100]
            assert await reader.get_many(chunk) == {k: data[k] for k in chunk}
        assert await reader.exists("user:7")

        for key in names[:100]:
            assert await writer.delete(key)
        assert await reader.get_many(names[:100]) == {}
        assert len(all_stored(raw)) == N - 100

        removed = await writer.invalidate_pattern("user:1*")
        assert removed == sum(1 for k in names[100:] if k.startswith("user:1"))
        assert all_stored(raw, PREFIX + "user:1*") == set()
        assert await reader.get("user:150", MISS) is MISS

        left = N - 100 - removed
        assert await writer.clear() == left
        assert all_stored(raw) == set()
        assert await reader.get_many(names) == {}
        assert await writer.get_many(names) == {}
        assert errors(writer) == {}
        assert errors(reader) == {}
        assert writer.sync.get_statistics()["l2_redis"]["available"]
    finally:
        await writer.close()
        await reader.close()


def test_every_sync_api_across_slots_with_write_behind(cluster: Cluster, raw: RedisCluster) -> None:
    data = keys_and_values()
    names = list(data)
    writer = make(cluster, write_behind=True, write_behind_batch_size=200)
    reader = make(cluster, hierarchical_caching=False)
    try:
        for key in names[:500]:
            writer.sync.set(key, data[key])
        for start in range(500, N, 100):
            writer.sync.set_many({k: data[k] for k in names[start : start + 100]})
        writer.sync.flush()  # write-behind batches span every slot
        assert len(all_stored(raw)) == N
        for start in range(0, N, 100):
            chunk = names[start : start + 100]
            assert reader.sync.get_many(chunk) == {k: data[k] for k in chunk}
        assert [reader.sync.get(k) for k in names[:50]] == [data[k] for k in names[:50]]

        for key in names[:100]:
            assert writer.sync.delete(key)
        assert reader.sync.get_many(names[:100]) == {}
        removed = writer.sync.invalidate_pattern("user:2*")
        assert removed == sum(1 for k in names[100:] if k.startswith("user:2"))
        assert all_stored(raw, PREFIX + "user:2*") == set()
        assert writer.sync.invalidate_prefix("user:3") > 0
        assert all_stored(raw, PREFIX + "user:3*") == set()

        writer.sync.clear()
        assert all_stored(raw) == set()
        assert reader.sync.get_many(names) == {}
        assert errors(writer) == {}
        assert errors(reader) == {}
    finally:
        writer.sync.close()
        reader.sync.close()


async def test_the_asyncio_cluster_pipeline_drops_unlink_and_deletes_still_land(
    cluster: Cluster, raw: RedisCluster
) -> None:
    """redis-py 8.1: ``ClusterPipeline.unlink`` is a coroutine, so a pipeline that calls it
    queues nothing. hiercache sends ``UNLINK`` with ``execute_command``, one key each."""
    raw.set(PREFIX + "a", b"1")
    raw.set(PREFIX + "b", b"2")
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    try:
        pipe = client.pipeline()
        dropped = pipe.unlink(PREFIX + "a")  # what a recipe calling p.unlink() would do
        queued = len(pipe)
        if asyncio.iscoroutine(dropped):
            dropped.close()
        if queued:  # pragma: no cover - fixed upstream: the workaround is still correct
            pytest.skip("this redis-py queues UNLINK in an asyncio cluster pipeline")
        assert queued == 0
    finally:
        await client.aclose()
    m = make(cluster)
    try:
        assert await m.delete("a")
        assert await m.delete("b")
        assert all_stored(raw) == set()
    finally:
        await m.close()


def test_a_cross_slot_get_many_is_one_mget_per_slot(cluster: Cluster, raw: RedisCluster) -> None:
    """Keys sharing a hash tag share a slot and one MGET; the rest get one MGET per slot."""
    writer, m = make(cluster), make(cluster, hierarchical_caching=False)
    tagged = {f"{{tenant:1}}:item:{i}": i for i in range(20)}
    spread = {f"item:{i}": i for i in range(20)}
    try:
        writer.sync.set_many({**tagged, **spread})
        before = mget_calls(raw)
        assert m.sync.get_many(list(tagged)) == tagged
        assert mget_calls(raw) - before == 1
        slots = {key_slot((PREFIX + k).encode()) for k in spread}
        before = mget_calls(raw)
        assert m.sync.get_many(list(spread)) == spread
        assert mget_calls(raw) - before == len(slots)
    finally:
        m.sync.close()
        writer.sync.close()


def mget_calls(raw: RedisCluster) -> int:
    total = 0
    for node in raw.get_primaries():
        stats = raw.info("commandstats", target_nodes=node)
        total += int(stats.get("cmdstat_mget", {}).get("calls", 0))
    return total


def test_a_cluster_that_cannot_be_reached_is_typed_and_never_raises() -> None:
    """Nothing listens: RedisClusterException (not a RedisError) is caught and counted."""
    m = HierarchicalCacheManager(
        CacheConfig(
            redis_url="redis+cluster://127.0.0.1:1",
            write_behind=False,
            telemetry_enabled=False,
            l2_connect_timeout_seconds=0.2,
        )
    )
    try:
        m.sync.set("k", 1)
        assert m.sync.get("k") == 1  # L1
        assert m.sync.get("other", MISS) is MISS
        assert not m.sync.get_statistics()["l2_redis"]["available"]
    finally:
        m.sync.close()


def test_sigkill_one_primary_under_load(cluster: Cluster, raw: RedisCluster) -> None:
    """0 exceptions reach callers while a primary dies and its replica takes over; then
    writes to the slots it served land again (on the promoted replica)."""
    m = make(cluster, l2_breaker_open_seconds=0.2)
    victim = cluster.primaries()[0]
    heir = cluster.replica_of(victim)
    served = cluster.slots_of(victim)
    keys_on_victim = [k for k in (f"after:{i}" for i in range(2000)) if slot(k) in served][:20]
    assert len(keys_on_victim) == 20
    assert heir.log is not None
    mark = heir.log.mark()
    try:
        with Load(m) as load:
            assert m.sync.get("warm", MISS) is MISS
            ops_before = load.ops
            killed_at = time.time()
            victim.kill()
            heir.log.wait("Failover election won", after=mark)
            took_over = logged_at(heir.log.wait("Cluster state changed: ok", after=mark))
            assert cluster.roles(seen_by=heir)[heir.address] == "master"
            assert write_until_stored(m, raw, keys_on_victim) == len(keys_on_victim)
            landed = time.time()
            print(
                f"\nreplica took over {took_over - killed_at:.2f} s after the SIGKILL; "
                f"writes to its slots landed {landed - took_over:.2f} s after that"
            )
            assert load.ops > ops_before
        assert load.exceptions == []
        assert set(errors(m)) <= {"connection", "timeout", "topology"}
    finally:
        m.sync.close()
        cluster.rejoin(victim)


def slot(key: str) -> int:
    return key_slot((PREFIX + key).encode())


def write_until_stored(m: HierarchicalCacheManager, raw: RedisCluster, keys: list[str]) -> int:
    """Write ``keys`` (write-through) until the cluster holds them all: the first writes
    after a failover may meet the client's stale slot map, which it then refreshes."""
    for _ in range(50):
        assert m.core.health.wait_live(30), "L2 never came back"
        for key in keys:
            m.sync.set(key, key)
        stored = [raw.get(PREFIX + k) for k in keys]
        if all(stored):
            return len(keys)
    return sum(1 for k in keys if raw.get(PREFIX + k))
