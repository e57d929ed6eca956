"""hiercache on Redis Sentinel: a primary, a replica and 3 sentinels (real redis-servers).

The URL syntax and its typed errors; every API through the primary the sentinels name;
failovers followed: after a SIGKILL (writes resume within 3 s of the promotion, and the
restarted old primary receives 0 writes) and after a manual failover (the demoted node
answers READONLY: hiercache drops its connections and finds the new primary).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from cluster_servers import Load, SentinelSetup, run_sentinel
from hiercache import MISS, HierarchicalCacheManager
from hiercache.settings import CacheConfig
from hiercache.topology import RedisUrlError, Topology, parse_multi_host

PREFIX = "hiercache:"
SECRET = "s3cr3t-data-pw"


# -- the URL ---------------------------------------------------------------------------
def test_a_sentinel_url_names_hosts_service_db_and_credentials() -> None:
    spec = parse_multi_host(
        "rediss+sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/cache-main/3"
        "?sentinel_username=watch&sentinel_password=spw&sentinel_ssl=false&ssl_ca_certs=/ca.pem"
    )
    assert spec.topology is Topology.SENTINEL
    assert spec.hosts == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (spec.service, spec.db) == ("cache-main", 3)
    assert (spec.username, spec.password) == ("app", "p@ss")
    assert (spec.sentinel_username, spec.sentinel_password) == ("watch", "spw")
    assert spec.tls
    assert not spec.sentinel_tls
    assert spec.ssl_ca_certs == "/ca.pem"
    assert "p@ss" not in repr(spec)
    assert "spw" not in repr(spec)
    assert spec.target == "rediss+sentinel://s1:26380,s2:26379,::1:26381/cache-main/3"


def test_a_password_only_url_and_the_defaults() -> None:
    spec = parse_multi_host("redis+sentinel://:pw@h1:1,h2:2/svc")
    assert (spec.username, spec.password, spec.db) == (None, "pw", 0)
    assert not spec.tls
    assert not spec.sentinel_tls
    assert parse_multi_host("rediss+sentinel://h/svc").sentinel_tls  # follows the data TLS


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"redis+sentinel://:{SECRET}@h1:26379", "needs the service name"),
        (f"redis+sentinel://:{SECRET}@h1:26379/svc/x", "only a database number"),
        (f"redis+sentinel://:{SECRET}@h1:99999/svc", "port outside 1-65535"),
        (f"redis+sentinel://:{SECRET}@h1:26379,/svc", "an empty host"),
        (f"redis+sentinel://:{SECRET}@h1/svc?sentinel_pasword=x", "unknown query parameter"),
        (f"redis+sentinel://:{SECRET}@h1/svc?sentinel_ssl=maybe", "must be true or false"),
        (f"redis+cluster://:{SECRET}@h1:7000/0", "has no path"),
        (f"redis+sentinal://:{SECRET}@h1/svc", "must start with"),
    ],
)
def test_a_bad_url_is_refused_naming_redis_url_never_the_password(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError) as direct:
        parse_multi_host(url)
    with pytest.raises(ValidationError) as setting:
        CacheConfig(redis_url=url)
    for text in (
        str(direct.value),
        str(setting.value) + repr(setting.value.errors(include_input=False)),
    ):
        assert message in text
        assert "redis_url" in text
        assert SECRET not in text


# -- a live sentinel setup -------------------------------------------------------------
@pytest.fixture(scope="session")
def sentinel() -> Iterator[SentinelSetup]:
    with run_sentinel(password=SECRET) as setup:
        yield setup


def client_of(setup: SentinelSetup, address: str) -> redis.Redis:
    host, port = address.split(":")
    return redis.Redis(host=host, port=int(port), password=setup.password)


@pytest.fixture
def primary(sentinel: SentinelSetup) -> Iterator[redis.Redis]:
    """The current primary (as the sentinels name it), emptied before each test."""
    client = client_of(sentinel, sentinel.master_address())
    client.flushall()
    yield client
    client.close()


def make(setup: SentinelSetup, **overrides: Any) -> HierarchicalCacheManager:
    values: dict[str, Any] = {
        "redis_url": setup.url(),
        "write_behind": False,
        "telemetry_enabled": False,
    }
    values.update(overrides)
    return HierarchicalCacheManager(CacheConfig(**values))


def errors(m: HierarchicalCacheManager) -> dict[str, int]:
    counted = m.sync.get_statistics()["l2_redis"]["errors"]
    return {kind: n for kind, n in counted.items() if n}


async def test_every_api_goes_to_the_primary_the_sentinels_name(
    sentinel: SentinelSetup, primary: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hiercache")
    writer, reader = make(sentinel), make(sentinel, hierarchical_caching=False)
    try:
        await writer.set("a", {"v": 1})
        await writer.set_many({f"user:{i}": i for i in range(50)})
        writer.sync.set("b", [1, 2])
        assert primary.exists(PREFIX + "a", PREFIX + "b", PREFIX + "user:7") == 3
        assert await reader.get("a") == {"v": 1}
        assert reader.sync.get("b") == [1, 2]
        assert await reader.get_many(["user:1", "user:2", "nope"]) == {"user:1": 1, "user:2": 2}
        assert await writer.delete("a")
        assert await reader.get("a", MISS) is MISS
        assert await writer.invalidate_pattern("user:1*") == 11
        assert await writer.clear() == 39 + 1
        assert primary.dbsize() == 0
        assert errors(writer) == {}
        assert errors(reader) == {}
        stats = writer.sync.get_statistics()["l2_redis"]
        assert stats["available"]
        assert stats["backend"] == sentinel.url().replace(f":{SECRET}@", "")
        assert SECRET not in repr(writer.core.l2) + caplog.text + repr(writer.core.config)
        watch = writer.core.l2.watch
        assert watch is not None
        assert watch.running
    finally:
        await writer.close()
        await reader.close()
    assert not watch.running  # closing the cache ends its sentinel watch


def test_a_wrong_data_password_is_an_auth_error_never_an_exception(
    sentinel: SentinelSetup, caplog: pytest.LogCaptureFixture
) -> None:
    url = sentinel.url().replace(SECRET, "wrong-" + SECRET)
    m = HierarchicalCacheManager(
        CacheConfig(redis_url=url, write_behind=False, telemetry_enabled=False)
    )
    try:
        m.sync.set("k", 1)
        assert m.sync.get("k") == 1  # L1
        assert m.sync.get("other", MISS) is MISS
        assert "auth" in errors(m)
        assert SECRET not in caplog.text
    finally:
        m.sync.close()


def write_until_landed(
    m: HierarchicalCacheManager, on: redis.Redis, deadline: float, tag: str
) -> float:
    """Write fresh keys (write-through) until one lands on ``on``; when it did (wall clock).
    Between tries it waits for the breaker to close (an event), never a fixed sleep."""
    i = 0
    while time.time() < deadline:
        m.core.health.wait_live(max(0.0, deadline - time.time()))
        key = f"{tag}:{i}"
        m.sync.set(key, i)
        if on.exists(PREFIX + key):
            return time.time()
        i += 1
    raise AssertionError(f"no write landed on the new primary before the deadline ({tag})")


def test_sigkill_the_primary_under_load(sentinel: SentinelSetup, primary: redis.Redis) -> None:
    """0 caller exceptions; L2 writes resume within 3 s of the promotion; the old primary,
    restarted, receives 0 writes while it is a stale standalone primary."""
    old = sentinel.by_address(sentinel.master_address())
    heir = next(n for n in sentinel.data_nodes if n is not old)
    m = make(sentinel)
    marks = sentinel.marks()
    try:
        assert m.sync.get("warm", MISS) is MISS  # starts the cache: the breaker closes
        assert m.core.health.wait_live(10)
        with Load(m) as load:
            killed_at = time.time()
            old.kill()
            new_address, promoted_at = sentinel.wait_switch(marks)
            print(f"\n+switch-master {promoted_at - killed_at:.2f} s after the SIGKILL")
            assert new_address == heir.address
            new_primary = client_of(sentinel, new_address)
            resumed_at = write_until_landed(m, new_primary, promoted_at + 10, "after-kill")
            print(f"L2 writes resumed {resumed_at - promoted_at:.2f} s after +switch-master")
            assert resumed_at - promoted_at <= 3.0

            # The old primary comes back empty, still configured as a primary, until the
            # sentinels turn it into a replica (seconds later): the data-loss window.
            marks = sentinel.marks()
            old.start()
            back = sentinel.sentinels[0].log
            assert back is not None
            back.wait(f"-sdown slave {old.address}", after=marks[0])
            write_until_landed(m, new_primary, time.time() + 10, "while-old-is-back")
            ops = load.ops
            for i in range(200):
                m.sync.set(f"window:{i}", i)
            assert load.ops > ops
            info = client_of(sentinel, old.address).info("everything")
            assert info["role"] == "master", "the check needs the old primary still standalone"
            assert not any(k.startswith("cmdstat_") and k[8:] in WRITES for k in info)
            assert "db0" not in info
            assert new_primary.exists(*(f"{PREFIX}window:{i}" for i in range(200))) == 200
        assert load.exceptions == []
        assert set(errors(m)) <= {"connection", "timeout", "topology"}
    finally:
        m.sync.close()
        if not old.running:
            old.start()
    # a sentinel turns the old primary into a replica of the new one (the next tests' setup)
    assert old.log is not None
    old.log.wait("MASTER <-> REPLICA sync: Finished with success")


#: Commands that write (what the cache sends and what a stale primary must never see).
WRITES = frozenset({"set", "unlink", "del", "mset", "setex", "psetex", "expire", "eval"})


def test_a_manual_failover_writes_follow_the_new_primary_at_once(
    sentinel: SentinelSetup, primary: redis.Redis
) -> None:
    """SENTINEL FAILOVER: the old primary stays up (writable until a sentinel demotes it).
    hiercache follows the sentinels' +switch-master, not its pooled connections: writes
    land on the new primary within 3 s of the announcement, before and after the demotion
    (where READONLY would also make it drop them). 0 exceptions reach callers."""
    old = sentinel.by_address(sentinel.master_address())
    m = make(sentinel)
    marks = sentinel.marks()
    assert old.log is not None
    old_mark = old.log.mark()
    try:
        assert m.sync.get("warm", MISS) is MISS  # starts the cache: the breaker closes
        assert m.core.health.wait_live(10)
        with Load(m) as load:
            m.sync.set("before", 1)
            assert primary.exists(PREFIX + "before")
            admin = redis.Redis(port=sentinel.sentinels[0].port)
            admin.execute_command("SENTINEL FAILOVER", sentinel.service)
            admin.close()
            new_address, promoted_at = sentinel.wait_switch(marks)
            assert new_address != old.address
            # The old primary is still up and writable until a sentinel demotes it, seconds
            # later; writes follow the +switch-master announcement, not the demotion.
            new_primary = client_of(sentinel, new_address)
            resumed_at = write_until_landed(m, new_primary, promoted_at + 10, "after-failover")
            assert resumed_at - promoted_at <= 3.0
            for i in range(100):
                m.sync.set(f"early:{i}", i)
            assert new_primary.exists(*(f"{PREFIX}early:{i}" for i in range(100))) == 100
            old.log.wait("MASTER <-> REPLICA sync: Finished with success", after=old_mark)
            demoted = client_of(sentinel, old.address)
            assert demoted.info("replication")["role"] == "slave"
            for i in range(100):
                m.sync.set(f"follow:{i}", i)
            assert new_primary.exists(*(f"{PREFIX}follow:{i}" for i in range(100))) == 100
            assert m.core.l2.watch is not None
            assert m.core.l2.watch.switches >= 1  # +switch-master made it drop connections
        assert load.exceptions == []
        assert set(errors(m)) <= {"connection", "timeout", "topology"}
    finally:
        m.sync.close()
