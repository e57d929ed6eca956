"""Decorator keys and ``@cache_operation`` semantics (async, sync, methods, single-flight)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import importlib.util
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hiercache import (
    MISS,
    CacheConfig,
    CacheKeyBuildError,
    HierarchicalCacheManager,
    cache_operation,
)
from hiercache.keys import MEMO_SIZE, KeyBuilder, canonical

HEX16 = r"[0-9a-f]{16}"


def unit_config(**overrides: Any) -> CacheConfig:
    base: dict[str, Any] = {
        "l2_backend": "embedded",
        "telemetry_enabled": False,
        "write_through": True,
    }
    base.update(overrides)
    return CacheConfig(**base)


@pytest.fixture
async def cache() -> AsyncIterator[HierarchicalCacheManager]:
    manager = HierarchicalCacheManager(unit_config())
    yield manager
    await manager.close()


@pytest.fixture
def sync_cache() -> Iterator[HierarchicalCacheManager]:
    manager = HierarchicalCacheManager(unit_config())
    yield manager
    manager.sync.close()


# -- key format --------------------------------------------------------------------
def plain(x: int, y: int = 5) -> int:
    return x + y


def test_default_prefix_is_module_and_qualname() -> None:
    key = cache_operation(cache=lambda: None)(plain).cache_key(1)  # type: ignore[arg-type, attr-defined]
    assert re.fullmatch(rf"test_keys_decorator\.plain:{HEX16}", key)


def test_cache_key_is_the_prefix() -> None:
    f = cache_operation(cache_key="user_data")(plain)
    assert re.fullmatch(rf"user_data:{HEX16}", f.cache_key(1))  # type: ignore[attr-defined]


def test_method_prefix_uses_qualname() -> None:
    class Svc:
        @cache_operation()
        def m(self, a: int) -> int:
            return a

    key = Svc.m.cache_key(Svc(), 1)  # type: ignore[attr-defined]
    prefix = f"{__name__}.test_method_prefix_uses_qualname.<locals>.Svc.m"
    assert key.startswith(prefix + ":")
    assert re.fullmatch(HEX16, key[len(prefix) + 1 :])


def test_binding_forms_share_a_key() -> None:
    k = cache_operation(cache_key="p")(plain).cache_key  # type: ignore[attr-defined]
    assert k(1) == k(x=1) == k(1, 5) == k(1, y=5) == k(y=5, x=1)


def test_different_arguments_differ() -> None:
    k = cache_operation(cache_key="p")(plain).cache_key  # type: ignore[attr-defined]
    keys = {k(1), k(2), k(1, 6), k(1.0), k("1"), k(True), k(None), k([1]), k((1, 2))}
    assert len(keys) == 9


def test_values_json_cannot_hold_get_keys_of_their_own() -> None:
    # JSON has no NaN or infinities (orjson would write null) and no integers past 64 bits.
    k = cache_operation(cache_key="p")(plain).cache_key  # type: ignore[attr-defined]
    odd = [None, float("nan"), float("inf"), float("-inf"), 2**70, -(2**70), str(2**70)]
    assert len({k(v) for v in odd}) == len(odd)
    assert k(2**70) == k(2**70)
    assert k(2**63 - 1) != k(2**63)


def test_keyword_only_and_varargs() -> None:
    def f(a: int, *rest: int, flag: bool = False, **extra: int) -> None: ...

    k = cache_operation(cache_key="v")(f).cache_key  # type: ignore[attr-defined]
    assert k(1) == k(1, flag=False) == k(a=1)
    assert k(1, 2) != k(1)
    assert k(1, z=3) != k(1)
    assert k(1, z=3, w=4) == k(1, w=4, z=3)
    with pytest.raises(TypeError):
        k()  # a missing argument is the same TypeError as calling the function


def test_container_arguments_are_canonical() -> None:
    k = cache_operation(cache_key="c")(lambda arg: arg).cache_key  # type: ignore[attr-defined]
    assert k({"a": 1, "b": 2}) == k({"b": 2, "a": 1})
    assert k({3, 1, 2}) == k({1, 2, 3}) == k(frozenset({2, 3, 1}))
    assert k({1: "x"}) != k({"1": "x"})
    assert k([1, 2]) != k([2, 1])
    assert k(b"ab") != k("ab")


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Query:
    table: str
    ids: tuple[int, ...]


def test_supported_value_types() -> None:
    k = cache_operation(cache_key="t")(lambda arg: arg).cache_key  # type: ignore[attr-defined]
    values = [
        Color.RED,
        Color.BLUE,
        Query("users", (1, 2)),
        Query("users", (2, 1)),
        datetime.date(2024, 1, 2),
        datetime.datetime(2024, 1, 2, 3, 4, 5),
        decimal.Decimal("1.10"),
        uuid.UUID(int=7),
        bytearray(b"\x00\x01"),
    ]
    keys = [k(v) for v in values]
    assert len(set(keys)) == len(values)
    assert k(Query("users", (1, 2))) == keys[2]


class Opaque:
    pass


def test_argument_without_canonical_form_is_refused() -> None:
    calls: list[object] = []

    @cache_operation(cache_key="o")
    def f(good: int, bad: object) -> None:
        calls.append(bad)

    with pytest.raises(CacheKeyBuildError) as info:
        f.cache_key(1, Opaque())  # type: ignore[attr-defined]
    assert info.value.argument == "bad"
    assert "'bad'" in str(info.value)
    assert "Opaque" in str(info.value)
    assert info.value.function.endswith("f")
    with pytest.raises(CacheKeyBuildError, match="'bad'"):
        f.cache_key(1, [1, Opaque()])  # type: ignore[attr-defined]
    with pytest.raises(CacheKeyBuildError, match="'bad'"):
        f.cache_key(1, {"x": lambda: None})  # type: ignore[attr-defined]


def test_refused_argument_never_calls_the_function(
    sync_cache: HierarchicalCacheManager,
) -> None:
    calls: list[object] = []

    @cache_operation(cache=sync_cache)
    def f(bad: object) -> None:
        calls.append(bad)

    with pytest.raises(CacheKeyBuildError):
        f(Opaque())
    assert calls == []


def test_cache_key_hook_on_arguments() -> None:
    class User:
        def __init__(self, uid: int, name: str) -> None:
            self.uid, self.name = uid, name

        def __cache_key__(self) -> int:
            return self.uid

    k = cache_operation(cache_key="u")(lambda user: user).cache_key  # type: ignore[attr-defined]
    assert k(User(1, "a")) == k(User(1, "b"))
    assert k(User(1, "a")) != k(User(2, "a"))


def test_self_contributes_cache_key_or_class_qualname() -> None:
    class Stateless:
        def m(self, a: int) -> int:
            return a

    class Tenant:
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        def __cache_key__(self) -> str:
            return self.tenant

        def m(self, a: int) -> int:
            return a

    stateless = KeyBuilder(Stateless.m, "s")
    assert stateless.key((Stateless(), 1), {}) == stateless.key((Stateless(), 1), {})
    assert stateless.key((Stateless(), 1), {}) != stateless.key((Stateless(), 2), {})

    tenant = KeyBuilder(Tenant.m, "s")
    assert tenant.key((Tenant("a"), 1), {}) == tenant.key((Tenant("a"), 1), {})
    assert tenant.key((Tenant("a"), 1), {}) != tenant.key((Tenant("b"), 1), {})
    # Without the hook, `self` is its class's qualified name: a different class differs.
    assert stateless.key((Stateless(), 1), {}) != tenant.key((Tenant("a"), 1), {})


def test_classmethod_cls_is_its_qualname() -> None:
    class A:
        @classmethod
        def m(cls, x: int) -> int:
            return x

    class B(A):
        pass

    builder = KeyBuilder(A.m.__func__, "cm")
    assert builder.key((A, 1), {}) == builder.key((A, 1), {})
    assert builder.key((A, 1), {}) != builder.key((B, 1), {})


def test_cache_key_fn_replaces_the_builder(sync_cache: HierarchicalCacheManager) -> None:
    def key_fn(user_id: str, tier: int) -> str:
        return f"user_{user_id}_tier_{tier}_settings"

    calls: list[tuple[str, int]] = []

    @cache_operation(cache_key_fn=key_fn, cache=sync_cache)
    def settings(user_id: str, tier: int) -> dict[str, int]:
        calls.append((user_id, tier))
        return {"tier": tier}

    assert settings.cache_key("u1", 2) == "user_u1_tier_2_settings"  # type: ignore[attr-defined]
    assert settings("u1", 2) == {"tier": 2}
    assert settings("u1", 2) == {"tier": 2}
    assert calls == [("u1", 2)]
    assert sync_cache.sync.get("user_u1_tier_2_settings") == {"tier": 2}


KEY_SCRIPT = """
import dataclasses, datetime, decimal, enum, uuid
from hiercache import cache_operation

class Color(enum.Enum):
    RED = 1

@dataclasses.dataclass
class Query:
    table: str
    ids: tuple

def f(a, b=None, *, c=frozenset()):
    pass

g = cache_operation(cache_key="stable")(f)
print(g.cache_key(
    "text", {"k": [1, 2.5, None, True], "s": {"x", "y", "z", "w"}, 3: b"by"},
    c=frozenset({"alpha", "beta", "gamma", Color.RED, uuid.UUID(int=5),
                 decimal.Decimal("2.50"), datetime.date(2020, 1, 1)}),
))
print(g.cache_key(Query("t", (1, 2)), b=[{"q", "r", "s"}]))
"""


def run_key_script(seed: str, cwd: Path) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", KEY_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    return done.stdout.split()


def test_keys_are_stable_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = run_key_script("1", tmp_path), run_key_script("4242", tmp_path)
    assert first == second
    assert len(first) == 2
    assert all(re.fullmatch(rf"stable:{HEX16}", line) for line in first)
    assert first[0] != first[1]
    # This process (yet another hash seed) computes the same keys.
    script = tmp_path / "keyscript.py"
    script.write_text(KEY_SCRIPT.replace("print(", "OUT.append("), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("keyscript", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.OUT = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyscript", module)
    spec.loader.exec_module(module)
    assert first == module.OUT  # type: ignore[attr-defined]


def five(name: Any, page: Any, ratio: Any, flag: Any, none: Any) -> None: ...


#: Keys computed before the positional fast path existed: the format must never change.
PINNED = [
    (("ada", 3, 0.5, True, None), "pin:ff3b0d898cfe9844"),
    (("\u00e9\u2603", -(2**63), -0.0, False, None), "pin:89013c27a2e1e9fe"),
    (("", 2**63, float("nan"), True, None), "pin:71ce4bbddc641f53"),
    (("x", 2**63 - 1, float("inf"), False, None), "pin:7d5b9c5c6fac9aa3"),
    (("x", 1, 1.0, 1, 0), "pin:700a429861266ad8"),
]


@pytest.mark.parametrize(("args", "key"), PINNED)
def test_positional_keys_are_pinned_and_match_the_general_path(
    args: tuple[Any, ...], key: str
) -> None:
    builder = KeyBuilder(five, "pin")
    assert builder.key(args, {}) == key  # the fast path: every argument positional
    assert builder.key((), dict(zip(builder.names, args))) == key  # the general path


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, 0.0, -0.0, 1e308, float("nan"),
     float("-inf"), True, False, None, "", "1", "\u2603", 1.5],
)  # fmt: skip
def test_fast_path_keys_equal_general_path_keys(value: Any) -> None:
    builder = KeyBuilder(five, None)
    args = (value, 1, "a", None, value)
    assert builder.key(args, {}) == builder.key(args[:2], dict(zip(builder.names[2:], args[2:])))


def test_remembered_keys_never_confuse_equal_values_of_other_types() -> None:
    class Level(enum.IntEnum):
        ONE = 1

    builder = KeyBuilder(plain, "p")
    fresh = KeyBuilder(plain, "p")  # nothing remembered: every key computed
    # 1 == True == 1.0 == Level.ONE and 0.0 == -0.0 == 0 == False: one tuple hash each.
    calls = [(1, 2), (True, 2), (1.0, 2), (Level.ONE, 2), (0, 2), (False, 2), (0.0, 2), (-0.0, 2)]
    first = [builder.key(args, {}) for args in calls]
    again = [builder.key(args, {}) for args in reversed(calls)][::-1]
    assert first == again == [KeyBuilder(plain, "p").key(args, {}) for args in calls]
    assert len(set(first)) == len(calls)
    assert fresh.key((1, 2), {}) == first[0]


def test_remembered_keys_stay_bounded_and_correct() -> None:
    builder = KeyBuilder(plain, "p")
    keys = {builder.key((i, 0), {}) for i in range(MEMO_SIZE + 10)}
    assert len(keys) == MEMO_SIZE + 10
    assert builder.key((3, 0), {}) == KeyBuilder(plain, "p").key((), {"x": 3, "y": 0})


def test_canonical_never_uses_repr_or_hash() -> None:
    # A set's canonical form is sorted, so it does not depend on iteration order.
    a = canonical({"b", "a", "c"}, "x", "f")
    b = canonical({"c", "b", "a"}, "x", "f")
    assert a == b == {"s": ["a", "b", "c"]}


# -- decorator semantics -----------------------------------------------------------
async def test_async_function_is_cached(cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="sq", ttl_seconds=60, cache=cache)
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert await square(3) == 9
    assert await square(3) == 9
    assert await square(x=3) == 9
    assert await square(4) == 16
    assert calls == [3, 4]
    assert await cache.get(square.cache_key(3)) == 9  # type: ignore[attr-defined]


def test_sync_function_is_cached(sync_cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="sq", cache=sync_cache)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(3) == 9
    assert square(3) == 9
    assert square(4) == 16
    assert calls == [3, 4]


async def test_methods_async_and_sync(cache: HierarchicalCacheManager) -> None:
    calls: list[str] = []

    class Repo:
        def __init__(self, tenant: str) -> None:
            self.tenant = tenant

        def __cache_key__(self) -> str:
            return self.tenant

        @cache_operation(cache=cache)
        async def load(self, item: int) -> str:
            calls.append(f"{self.tenant}:{item}")
            return f"{self.tenant}-{item}"

        @cache_operation(cache=cache)
        def load_sync(self, item: int) -> str:
            calls.append(f"sync {self.tenant}:{item}")
            return f"{self.tenant}={item}"

    a, a2, b = Repo("a"), Repo("a"), Repo("b")
    assert await a.load(1) == "a-1"
    assert await a2.load(1) == "a-1"  # same __cache_key__: shared entry
    assert await b.load(1) == "b-1"
    assert await asyncio.to_thread(a.load_sync, 2) == "a=2"
    assert await asyncio.to_thread(a2.load_sync, 2) == "a=2"
    assert calls == ["a:1", "b:1", "sync a:2"]


async def test_exceptions_are_never_cached_async(cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="flaky", cache=cache)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("LLM error")
        return "ok"

    with pytest.raises(ValueError, match="LLM error"):
        await flaky()
    assert await cache.get(flaky.cache_key(), MISS) is MISS  # type: ignore[attr-defined]
    assert await flaky() == "ok"
    assert await flaky() == "ok"
    assert len(calls) == 2


def test_exceptions_are_never_cached_sync(sync_cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="flaky", cache=sync_cache)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("boom")
        return "ok"

    with pytest.raises(ValueError, match="boom"):
        flaky()
    assert flaky() == "ok"
    assert flaky() == "ok"
    assert len(calls) == 2


async def test_invalidate_async(cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="inv", cache=cache)
    async def f(x: int, y: int = 0) -> int:
        calls.append(x)
        return x + len(calls)

    assert await f(1) == 2
    assert await f(1) == 2
    assert await f.invalidate(x=1, y=0) is True  # type: ignore[attr-defined]
    assert await f(1) == 3  # recomputed
    assert await f(1) == 3
    assert await f.invalidate(7) is False  # type: ignore[attr-defined]
    assert calls == [1, 1]


def test_invalidate_sync(sync_cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="inv", cache=sync_cache)
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert f(1) == 1
    assert f(1) == 1
    assert f.invalidate(1) is True  # type: ignore[attr-defined]
    assert f(1) == 2
    assert calls == [1, 1]


async def test_cached_none_is_a_hit(cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="none", cache=cache)
    async def nothing(x: int) -> None:
        calls.append(x)
        return None

    assert await nothing(1) is None
    assert await nothing(1) is None
    assert calls == [1]
    key = nothing.cache_key(1)  # type: ignore[attr-defined]
    assert await cache.get(key, MISS) is None
    assert await cache.get("never-set", MISS) is MISS
    assert await cache.get("never-set") is None
    assert not MISS
    assert repr(MISS) == "MISS"


def test_cached_none_is_a_hit_sync(sync_cache: HierarchicalCacheManager) -> None:
    calls: list[int] = []

    @cache_operation(cache_key="none", cache=sync_cache)
    def nothing() -> None:
        calls.append(1)

    nothing()
    nothing()
    assert calls == [1]
    assert sync_cache.sync.get(nothing.cache_key(), MISS) is None  # type: ignore[attr-defined]
    assert sync_cache.sync.get("absent", MISS) is MISS


async def test_cached_none_survives_l2(redis_url: str) -> None:
    """A None stored by one process is a hit for another (through real Redis)."""
    calls: list[str] = []

    def decorated(manager: HierarchicalCacheManager) -> Callable[[], Awaitable[None]]:
        @cache_operation(cache_key="none-l2", cache=manager)
        async def nothing() -> None:
            calls.append("called")

        return nothing

    writer = HierarchicalCacheManager(CacheConfig(redis_url=redis_url, write_through=True))
    reader = HierarchicalCacheManager(CacheConfig(redis_url=redis_url, write_through=True))
    try:
        await decorated(writer)()
        key = decorated(reader).cache_key()  # type: ignore[attr-defined]
        assert len(reader.l1) == 0
        assert await reader.get(key, MISS) is None  # from L2
        await decorated(reader)()
        assert calls == ["called"]
        await reader.delete(key)
        assert await reader.get(key, MISS) is MISS
    finally:
        await writer.close()
        await reader.close()


async def test_uses_process_wide_manager_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import hiercache

    monkeypatch.setenv("CACHE_L2_BACKEND", "none")
    monkeypatch.setenv("CACHE_TELEMETRY_ENABLED", "false")
    old = hiercache.set_cache_manager(None)
    calls: list[int] = []
    try:

        @cache_operation(cache_key="default-manager")
        async def f() -> int:
            calls.append(1)
            return 5

        assert await f() == 5
        assert await f() == 5
        assert calls == [1]
        assert await hiercache.get_cache_manager().get(f.cache_key()) == 5  # type: ignore[attr-defined]
    finally:
        mine = hiercache.set_cache_manager(old)
        if mine is not None:
            await mine.close()


# -- single-flight -----------------------------------------------------------------
async def test_thousand_concurrent_calls_one_backend_call(redis_url: str) -> None:
    n = 1000
    # 1000 callers share redis_max_connections (64) connections: they queue for one, for
    # at most the operation timeout (generous here, so a loaded CI box does not time out).
    manager = HierarchicalCacheManager(
        CacheConfig(redis_url=redis_url, telemetry_enabled=False, l2_operation_timeout_seconds=5)
    )
    entered = 0
    all_in = asyncio.Event()
    real_do = manager._flight.ado

    async def counting_do(key: str, load: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        # Every caller missed L1 and L2 and reached the single-flight.
        nonlocal entered
        entered += 1
        if entered == n:
            all_in.set()
        return await real_do(key, load)

    manager._flight.ado = counting_do  # type: ignore[method-assign]
    calls = 0

    @cache_operation(cache_key="llm", cache=manager)
    async def expensive(prompt: str) -> dict[str, str]:
        nonlocal calls
        calls += 1
        await asyncio.wait_for(all_in.wait(), timeout=30)  # gate: all 1000 are in flight
        return {"answer": prompt.upper()}

    try:
        await manager.initialize()
        results = await asyncio.gather(*(expensive("hi") for _ in range(n)))
        assert calls == 1
        assert entered == n
        assert results == [{"answer": "HI"}] * n
        stats = manager.statistics()
        assert stats["loads"] == {"success": 1, "error": 0}
        assert stats["coalesced"] == n - 1
        assert stats["l2_redis"]["errors"] == dict.fromkeys(stats["l2_redis"]["errors"], 0)
        await manager.flush()
        # The one result reached the real Redis.
        other = HierarchicalCacheManager(CacheConfig(redis_url=redis_url))
        try:
            assert await other.get(expensive.cache_key("hi")) == {"answer": "HI"}  # type: ignore[attr-defined]
        finally:
            await other.close()
    finally:
        await manager.close()


def test_eight_threads_one_call(redis_url: str) -> None:
    n = 8
    manager = HierarchicalCacheManager(CacheConfig(redis_url=redis_url, telemetry_enabled=False))
    start = threading.Barrier(n)
    all_in = threading.Event()
    lock = threading.Lock()
    entered = 0
    real_do = manager.sync._flight.do

    def counting_do(key: str, load: Callable[[], Any]) -> tuple[Any, bool]:
        nonlocal entered
        with lock:
            entered += 1
            if entered == n:
                all_in.set()
        return real_do(key, load)

    manager.sync._flight.do = counting_do  # type: ignore[method-assign]
    calls = 0

    @cache_operation(cache_key="threads", cache=manager)
    def load(x: int) -> list[int]:
        nonlocal calls
        with lock:
            calls += 1
        assert all_in.wait(timeout=30)
        return [x, x]

    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            start.wait(timeout=30)
            results[i] = load(21)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert calls == 1
        assert entered == n
        assert results == [[21, 21]] * n
    finally:
        manager.sync.close()
