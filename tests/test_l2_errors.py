"""Every L2 failure gets its error.type: each produced by a real redis-server where possible,
the rest by a real server replying that error (a Lua ``error_reply``), parsed by redis-py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio
from redis import exceptions as rx
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from hiercache.errors import (
    CorruptValueError,
    IncompatibleValueError,
    SerializationError,
    UnknownSigningKeyError,
    ValueTooLargeError,
)
from hiercache.l2_errors import ERROR_TYPES, error_type, needs_rediscovery, opens_breaker
from servers import RedisServer, free_port, run_redis

PASSWORD = "l2-errors-test-password"


def once() -> Retry:
    """No retries: one failure is one error (redis-py retries connection errors by default)."""
    return Retry(NoBackoff(), 0)


def async_once() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 0)


def failure(call: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:  # noqa: PT011 - any failure: we classify it
        call()
    return info.value


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield c
    c.close()


@pytest.fixture(scope="module")
def own_server() -> Iterator[RedisServer]:
    """A server whose configuration these tests may change (OOM, BUSY, REPLICAOF)."""
    with run_redis() as server:
        yield server


@pytest.fixture
def own(own_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(host=own_server.host, port=own_server.port, socket_timeout=5)
    c.flushall()
    yield c
    c.config_set("maxmemory", 0)
    c.config_set("maxmemory-policy", "noeviction")
    c.config_set("busy-reply-threshold", 5000)
    c.config_set("replica-serve-stale-data", "yes")
    c.replicaof("NO", "ONE")
    c.close()


# -- produced by a real server ----------------------------------------------------------
def test_wrong_type(client: redis.Redis) -> None:
    client.lpush("list", "x")
    assert error_type(failure(lambda: client.get("list"))) == "wrong_type"


def test_wrong_type_in_a_pipeline_is_still_wrong_type(client: redis.Redis) -> None:
    client.lpush("list", "x")
    pipe = client.pipeline(transaction=False)
    pipe.get("ok").get("list")
    exc = failure(pipe.execute)
    assert "of pipeline caused error" in str(exc)
    assert error_type(exc) == "wrong_type"


async def test_wrong_type_in_an_async_pipeline(redis_url: str, client: redis.Redis) -> None:
    client.lpush("list", "x")
    aclient = redis.asyncio.Redis.from_url(redis_url)
    try:
        pipe = aclient.pipeline(transaction=False)
        pipe.get("list")
        with pytest.raises(rx.ResponseError) as info:
            await pipe.execute()
    finally:
        await aclient.aclose()
    assert error_type(info.value) == "wrong_type"


def test_oom_is_write_refused(own: redis.Redis) -> None:
    own.config_set("maxmemory-policy", "noeviction")
    own.config_set("maxmemory", 1)  # anything in use is over it
    exc = failure(lambda: own.set("k", "v"))
    assert isinstance(exc, rx.OutOfMemoryError)
    assert error_type(exc) == "write_refused"
    assert own.get("k") is None  # reads still work: L2 is up
    pipe = own.pipeline(transaction=True)
    pipe.set("a", "1").set("b", "2")
    assert error_type(failure(pipe.execute)) == "write_refused"  # not EXECABORT's "other"


def test_readonly_replica_is_topology(own: redis.Redis, redis_server: RedisServer) -> None:
    own.replicaof(redis_server.host, redis_server.port)
    exc = failure(lambda: own.set("k", "v"))
    assert isinstance(exc, rx.ReadOnlyError)
    assert error_type(exc) == "topology"


def test_masterdown_is_topology(own: redis.Redis) -> None:
    own.config_set("replica-serve-stale-data", "no")
    own.replicaof("127.0.0.1", free_port())  # a primary that is not there
    exc = failure(lambda: own.get("k"))
    assert "MASTERDOWN" in str(exc) or isinstance(exc, rx.MasterDownError)
    assert error_type(exc) == "topology"


def test_busy_script_is_busy(own: redis.Redis, own_server: RedisServer) -> None:
    own.config_set("busy-reply-threshold", 10)
    runner = redis.Redis(host=own_server.host, port=own_server.port)
    outcome: list[BaseException] = []

    def spin() -> None:
        try:
            runner.eval("while true do end", 0)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=spin)
    thread.start()
    seen: BaseException | None = None
    try:
        deadline = time.monotonic() + 30
        while seen is None and time.monotonic() < deadline:
            try:
                own.get("k")  # answered until the script starts, then BUSY after 10 ms
            except rx.ResponseError as exc:
                seen = exc
    finally:
        while thread.is_alive():
            try:
                own.script_kill()
            except rx.ResponseError:
                pass  # NOTBUSY: the script has not started yet, or has just ended
            thread.join(timeout=0.05)
        runner.close()
    assert seen is not None
    assert str(seen).startswith("BUSY")
    assert error_type(seen) == "busy"
    assert len(outcome) == 1
    assert error_type(outcome[0]) == "other"  # "Script killed by user"


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    with run_redis(password=PASSWORD) as server:
        admin = redis.Redis(host=server.host, port=server.port, password=PASSWORD)
        admin.acl_setuser(
            "limited",
            enabled=True,
            passwords=["+limited-pass"],
            keys=["*"],
            commands=["+@all", "-get"],
        )
        admin.close()
        yield server


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        (None, None, "NOAUTH"),
        (None, "wrong-password", "WRONGPASS"),
        ("limited", "limited-pass", "NOPERM"),
    ],
)
def test_auth_failures(
    password_server: RedisServer, username: str | None, password: str | None, code: str
) -> None:
    c = redis.Redis(
        host=password_server.host,
        port=password_server.port,
        username=username,
        password=password,
        retry=once(),
    )
    try:
        exc = failure(lambda: c.get("k"))
    finally:
        c.close()
    assert getattr(exc, "status_code", None) == code or str(exc).startswith(code)
    assert error_type(exc) == "auth"


def test_connection_refused_is_connection() -> None:
    c = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=once())
    assert error_type(failure(lambda: c.get("k"))) == "connection"


def test_a_silent_server_is_a_timeout() -> None:
    with socket.socket() as silent:  # the kernel completes the handshake; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        c = redis.Redis(port=silent.getsockname()[1], socket_timeout=0.05, retry=once())
        exc = failure(lambda: c.get("k"))
        c.close()
    assert isinstance(exc, rx.TimeoutError)
    assert error_type(exc) == "timeout"


async def test_async_timeout_and_connection(unused_tcp_port: int) -> None:
    refused = redis.asyncio.Redis(port=unused_tcp_port, retry=async_once())
    with pytest.raises(Exception) as info:  # noqa: PT011
        await refused.get("k")
    await refused.aclose()
    assert error_type(info.value) == "connection"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        c = redis.asyncio.Redis(
            port=silent.getsockname()[1], socket_timeout=0.05, retry=async_once()
        )
        with pytest.raises(Exception) as info:  # noqa: PT011
            await c.get("k")
        await c.aclose()
    assert error_type(info.value) == "timeout"


def test_pool_exhaustion_is_a_timeout(redis_url: str) -> None:
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.01)
    held = pool.get_connection()
    try:
        exc = failure(lambda: redis.Redis(connection_pool=pool, retry=once()).get("k"))
    finally:
        pool.release(held)
        pool.disconnect()
    assert error_type(exc) == "timeout"


# -- replied by a real server, parsed by redis-py --------------------------------------
@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("LOADING Redis is loading the dataset in memory", "busy"),
        ("BUSY Redis is busy running a script", "busy"),
        ("MASTERDOWN Link with MASTER is down", "topology"),
        ("CLUSTERDOWN The cluster is down", "topology"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", "topology"),
        ("MOVED 3999 127.0.0.1:6381", "topology"),
        ("ASK 3999 127.0.0.1:6381", "topology"),
        ("READONLY You can't write against a read only replica.", "topology"),
        ("NOREPLICAS Not enough good replicas to write.", "write_refused"),
        ("MISCONF Redis is configured to save RDB snapshots, but it's unable to", "write_refused"),
        ("OOM command not allowed when used memory > 'maxmemory'.", "write_refused"),
        ("NOAUTH Authentication required.", "auth"),
        ("WRONGPASS invalid username-password pair", "auth"),
        ("NOPERM this user has no permissions", "auth"),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", "wrong_type"),
        ("ERR max number of clients reached", "connection"),
        ("ERR unknown command", "other"),
        ("BUSYKEY Target key name already exists.", "other"),
        ("CROSSSLOT Keys in request don't hash to the same slot", "other"),
        ("EXECABORT Transaction discarded because of previous errors.", "other"),
    ],
)
def test_reply_codes(client: redis.Redis, reply: str, kind: str) -> None:
    script = "return redis.error_reply(ARGV[1])"
    exc = failure(lambda: client.eval(script, 0, reply))
    assert error_type(exc) == kind, (type(exc), exc)
    pipe = client.pipeline(transaction=False)
    pipe.eval(script, 0, reply)
    assert error_type(failure(pipe.execute)) == kind  # with the pipeline's annotation too


# -- raised by hiercache and by redis-py's cluster client ------------------------------
@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (CorruptValueError("bad header"), "corrupt"),
        (IncompatibleValueError("version 9"), "incompatible"),
        (UnknownSigningKeyError("key id"), "incompatible"),
        (SerializationError("k", "set"), "serialization"),
        (ValueTooLargeError("k", 10, 5), "serialization"),
        (rx.SlotNotCoveredError("slot 5 not covered"), "topology"),
        (rx.RedisClusterException("Redis Cluster cannot be connected"), "topology"),
        (rx.ClusterError("TTL exhausted."), "topology"),
        (rx.CrossSlotTransactionError("cross slot"), "other"),
        (rx.InvalidResponse("Protocol Error: x"), "connection"),
        (rx.DataError("Invalid input of type: 'dict'"), "other"),
        (ValueError("anything else"), "other"),
        (ConnectionResetError(104, "reset"), "connection"),
        (TimeoutError(), "timeout"),
    ],
)
def test_non_reply_errors(exc: BaseException, kind: str) -> None:
    assert not isinstance(rx.RedisClusterException("x"), rx.RedisError)
    assert error_type(exc) == kind


def test_policies() -> None:
    assert [k for k in ERROR_TYPES if opens_breaker(k)] == ["timeout", "connection"]
    assert [k for k in ERROR_TYPES if needs_rediscovery(k)] == ["topology"]
    assert len(set(ERROR_TYPES)) == len(ERROR_TYPES) == 11
