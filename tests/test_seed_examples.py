"""Every Python example of the seed guide runs against hiercache and a real Redis.

The blocks are read from the seed guide at test time, never at import: it lives beside the
repository, in ``../shared/seeds/`` (or ``$HIERCACHE_SHARED_DIR/seeds/``), and every test
here is skipped, with that reason, when it is absent. ``from caching.cache_system import``
becomes ``from hiercache import``. Only the outside services the guide invents are
faked (``db``, ``openai_client``, ``event_bus``, ``metrics_db``, ``config_db``,
``llm_client``, ``logger``, the ``observability`` module) plus the sample data it never
defines (``dream_data``, ``metrics``, ``config``). ``asyncio.sleep`` inside the examples
is made instant; what the examples print is asserted instead.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import os
import re
import sys
import textwrap
import time
import types
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

import hiercache
from hiercache import (
    MISS,
    CacheConfig,
    CacheStrategy,
    HierarchicalCacheManager,
    cache_operation,
    get_cache_manager,
)
from hiercache.codec import COMPRESSED

REPO = Path(__file__).resolve().parents[1]
#: Where the material that is not part of the repository lives: the folder beside the clone,
#: or the one this environment variable names.
SHARED_DIR_VARIABLE = "HIERCACHE_SHARED_DIR"
SEED_NAME = "seeds/000_9b9f9a25fa0ab65d.txt"


def seed_path() -> Path:
    shared = os.environ.get(SHARED_DIR_VARIABLE) or str(REPO.parent / "shared")
    return Path(shared) / SEED_NAME


@dataclass
class Block:
    number: int
    heading: str
    source: str


def extract_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    heading = ""
    body: list[str] | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if body is None:
            if stripped.startswith("```python"):
                body = []
            elif stripped.startswith("#"):
                heading = stripped.lstrip("#").strip()
        elif stripped.startswith("```"):
            source = textwrap.dedent("\n".join(body))
            blocks.append(Block(len(blocks) + 1, heading, source))
            body = None
        else:
            body.append(line)
    return blocks


def rewrite(source: str) -> str:
    return source.replace("from caching.cache_system import", "from hiercache import")


@pytest.fixture(scope="session")  # session: set up before, and so without, the session Redis
def blocks() -> list[Block]:
    """The seed guide's Python blocks; skips the test when the guide is not there."""
    path = seed_path()
    if not path.is_file():
        pytest.skip(
            f"the seed guide is not in this checkout's surroundings: {path} is absent "
            f"(put the shared folder beside the repository or set {SHARED_DIR_VARIABLE})"
        )
    return extract_blocks(path.read_text(encoding="utf-8"))


# Fragments that are not programs, by block number.
SKIPPED = {
    24: "'Cache Key Naming': lists of key-name strings, nothing to run",
    25: "'TTL Selection': bare decorator lines with no function under them",
    29: "'Low Cache Hit Rate': a bare decorator line with no function",
    33: "'Stale Data in Cache': a bare decorator line with no function",
}

# Names a block uses without importing or defining them: the guide's running `cache`
# variable and library names imported by earlier sections. (The "Default Configuration"
# example uses CacheStrategy without importing it, so it is provided there.)
CONTEXT: dict[int, tuple[str, ...]] = {
    1: ("cache",),
    5: ("cache_operation",),
    6: ("cache_operation",),
    7: ("cache_operation",),
    8: ("CacheStrategy",),
    11: ("cache",),
    13: ("cache_operation",),
    16: ("get_cache_manager",),
    17: ("get_cache_manager",),
    21: ("cache", "dream_data"),
    22: ("metrics", "config"),
    23: ("HierarchicalCacheManager",),
    26: ("cache_operation",),
    27: ("get_cache_manager",),
    28: ("cache", "CacheStrategy"),
    30: ("CacheConfig",),
    31: ("CacheConfig",),
    32: ("CacheConfig", "CacheStrategy"),
    34: ("cache",),
    35: ("cache", "key", "operation"),
    36: ("CacheConfig",),
}

EXPECTED_HEADINGS = [
    "Cache Promotion",
    "1. Basic Caching",
    "2. Using the Decorator",
    "3. Context Manager for Operations",
    "Basic Decorator",
    "Dynamic Cache Keys",
    "Advanced: Custom Cache Key Function",
    "Default Configuration",
    "Environment-Based Configuration",
    "Eviction Strategies",
    "Cache Hit Rate Analysis",
    "Real-World Performance Test",
    "1. Time-Based Invalidation (TTL)",
    "2. Manual Invalidation",
    "3. Event-Driven Invalidation",
    "4. Cache-Aside Pattern",
    "5. Write-Through Cache",
    "Available Cache Metrics",
    "Instrumenting Your Code",
    "1. Cache Warming",
    "2. Compression for Large Payloads",
    "3. Multi-Tier Caching Strategy",
    "4. Distributed Cache Coordination",
    "1. Cache Key Naming",
    "2. TTL Selection",
    "3. Avoid Caching Errors",
    "4. Monitor Cache Hit Rates",
    "5. Cache Size Management",
    "Problem: Low Cache Hit Rate",
    "Problem: High Memory Usage",
    "Problem: High Memory Usage",
    "Problem: High Memory Usage",
    "Problem: Stale Data in Cache",
    "Problem: Stale Data in Cache",
    "Problem: Stale Data in Cache",
    "Problem: Redis Connection Failures",
    "Performance Test Script",
]


def is_fragment(source: str) -> bool:
    try:
        compile(source, "<seed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError:
        return True
    tree = ast.parse(source)
    exprs = [n for n in tree.body if isinstance(n, ast.Expr)]
    only_strings = all(
        isinstance(n.value, ast.Constant) and isinstance(n.value.value, str) for n in exprs
    )
    return bool(exprs) and len(exprs) == len(tree.body) and only_strings


def test_the_seed_blocks_are_the_expected_ones(blocks: list[Block]) -> None:
    assert [b.heading for b in blocks] == EXPECTED_HEADINGS
    imports = [b for b in blocks if "caching.cache_system" in b.source]
    assert len(imports) == 16
    assert all("caching.cache_system" not in rewrite(b.source) for b in blocks)


def test_the_skip_list_is_exactly_the_fragments(blocks: list[Block]) -> None:
    fragments = {b.number for b in blocks if is_fragment(b.source)}
    assert fragments == set(SKIPPED)


# -- fakes of the guide's invented services ----------------------------------------
@dataclass
class FakeUsers:
    rows: dict[str, dict[str, Any]]
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append(("find_one", query))
        return self.rows.get(str(query["id"]))

    async def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("update_one", query))
        row = self.rows.setdefault(str(query["id"]), {"id": str(query["id"])})
        row.update(update["$set"])
        return dict(row)

    def find(self, query: dict[str, Any]) -> Any:
        rows = [r for r in self.rows.values() if r.get("status") == query.get("status")]

        class Cursor:
            async def to_list(self, length: int) -> list[dict[str, Any]]:
                return rows[:length]

        return Cursor()


class FakeDB:
    def __init__(self) -> None:
        self.users = FakeUsers(
            {
                str(i): {"id": str(i), "name": f"user{i}", "status": "active" if i < 4 else "gone"}
                for i in range(1, 6)
            }
        )
        self.calls: list[tuple[Any, ...]] = []

    async def query(self, user_id: str, include_history: bool) -> dict[str, Any]:
        self.calls.append(("query", user_id, include_history))
        return {"user": user_id, "history": [1, 2] if include_history else []}

    async def get_settings(self, user_id: str, tier: int) -> dict[str, Any]:
        self.calls.append(("get_settings", user_id, tier))
        return {"user": user_id, "tier": tier, "theme": "dark"}


class FakeOpenAI:
    def __init__(self) -> None:
        self.calls = 0
        self.models = self

    async def list(self) -> Any:
        self.calls += 1
        return types.SimpleNamespace(data=[{"id": "gpt-4"}, {"id": "gpt-4o-mini"}])


class FakeEventBus:
    def __init__(self) -> None:
        self.handlers: dict[str, list[Callable[..., Any]]] = {}

    def subscribe(self, event: str, handler: Callable[..., Any]) -> None:
        self.handlers.setdefault(event, []).append(handler)


class FakeSource:
    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    async def get_current(self) -> Any:
        self.calls += 1
        return self.value

    get_latest = get_current


class FakeLLM:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False

    async def complete(self, prompt: str) -> Any:
        self.calls.append(prompt)
        if self.fail:
            return types.SimpleNamespace(error="rate limited", data=None)
        return types.SimpleNamespace(error=None, data=f"completion of {prompt}")


class FakeLogger:
    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def warning(self, msg: str) -> None:
        self.records.append(("warning", msg))

    def critical(self, msg: str) -> None:
        self.records.append(("critical", msg))


class FakeMetric:
    def __init__(self, kind: str, name: str, doc: str, **kwargs: Any) -> None:
        self.kind, self.name, self.doc, self.kwargs = kind, name, doc, kwargs
        self.events: list[tuple[str, Any, dict[str, str]]] = []
        self._labels: dict[str, str] = {}

    def labels(self, **labels: str) -> FakeMetric:
        child = FakeMetric(self.kind, self.name, self.doc, **self.kwargs)
        child.events = self.events
        child._labels = labels
        return child

    def inc(self, amount: float = 1) -> None:
        self.events.append(("inc", amount, self._labels))

    def observe(self, value: float) -> None:
        self.events.append(("observe", value, self._labels))

    def set(self, value: float) -> None:
        self.events.append(("set", value, self._labels))


def fake_observability() -> types.ModuleType:
    module = types.ModuleType("observability")
    module.registry = {}  # type: ignore[attr-defined]

    def factory(kind: str) -> Callable[..., FakeMetric]:
        def make(name: str, doc: str, **kwargs: Any) -> FakeMetric:
            metric = FakeMetric(kind, name, doc, **kwargs)
            module.registry[name] = metric  # type: ignore[attr-defined]
            return metric

        return make

    module.counter = factory("counter")  # type: ignore[attr-defined]
    module.histogram = factory("histogram")  # type: ignore[attr-defined]
    module.gauge = factory("gauge")  # type: ignore[attr-defined]
    return module


@dataclass
class Fakes:
    db: FakeDB = field(default_factory=FakeDB)
    openai_client: FakeOpenAI = field(default_factory=FakeOpenAI)
    event_bus: FakeEventBus = field(default_factory=FakeEventBus)
    metrics_db: FakeSource = field(default_factory=lambda: FakeSource({"rps": 12}))
    config_db: FakeSource = field(default_factory=lambda: FakeSource({"flag": True}))
    llm_client: FakeLLM = field(default_factory=FakeLLM)
    logger: FakeLogger = field(default_factory=FakeLogger)
    observability: types.ModuleType = field(default_factory=fake_observability)
    sleeps: list[float] = field(default_factory=list)


def fast_asyncio(sleeps: list[float]) -> types.ModuleType:
    """``asyncio`` as the examples see it: ``sleep`` records its delay and only yields;
    ``run`` closes the process-wide cache inside the loop it ran on."""
    module = types.ModuleType("asyncio")
    module.__dict__.update(asyncio.__dict__)
    real_sleep, real_run = asyncio.sleep, asyncio.run

    async def sleep(delay: float, result: Any = None) -> Any:
        sleeps.append(delay)
        return await real_sleep(0, result)

    def run(coro: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            try:
                return await coro
            finally:
                previous = hiercache.set_cache_manager(None)
                if previous is not None:
                    await previous.close()

        return real_run(main(), **kwargs)

    module.sleep = sleep  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


def namespace(fakes: Fakes, context: dict[str, Any]) -> dict[str, Any]:
    fast = fast_asyncio(fakes.sleeps)
    real_import = builtins.__import__

    def imp(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level=0):  # type: ignore[no-untyped-def]
        if name == "asyncio" and level == 0:
            return fast
        return real_import(name, globals, locals, fromlist, level)

    ns: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": {**builtins.__dict__, "__import__": imp},
        "asyncio": fast,
        "os": os,
        "time": time,
        "db": fakes.db,
        "openai_client": fakes.openai_client,
        "event_bus": fakes.event_bus,
        "metrics_db": fakes.metrics_db,
        "config_db": fakes.config_db,
        "llm_client": fakes.llm_client,
        "logger": fakes.logger,
    }
    ns.update(context)
    return ns


async def run_block(block: Block, ns: dict[str, Any]) -> None:
    source = rewrite(block.source)
    code = compile(
        source, f"<seed block {block.number}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    if "asyncio.run(" in source:
        # The example starts its own event loop: run it where no loop is running.
        await asyncio.to_thread(eval, code, ns)
        return
    result = eval(code, ns)
    if inspect.iscoroutine(result):
        await result


# -- per-block set-up and checks ---------------------------------------------------
@dataclass
class Env:
    ns: dict[str, Any]
    fakes: Fakes
    raw: redis.Redis
    out: str = ""


SAMPLE = {"dream": "x" * 40, "symbols": list(range(30))}


async def prepare(number: int, env_raw: redis.Redis, context: dict[str, Any]) -> None:
    if number == 1:
        writer = HierarchicalCacheManager(CacheConfig(write_through=True))
        await writer.set("user:123", {"name": "Ada"})
        await writer.close()
    if number == 14:
        cache = get_cache_manager()
        for key in ("user:123", "user:1", "user:2", "order:1"):
            await cache.set(key, {"k": key})
    if number == 35:
        await context["cache"].set("refresh:me", "stale")


def check(number: int) -> Callable[[Env], Any] | None:
    return globals().get(f"check_{number}")


async def check_1(env: Env) -> None:
    stats = await get_cache_manager().get_statistics()
    assert env.ns["value"] == {"name": "Ada"}
    assert stats["l2_redis"]["hits"] == 1
    assert stats["l1_memory"]["hits"] == 1
    assert stats["promotions"] == 1


async def check_2(env: Env) -> None:
    assert env.out == "{'data': 'value'}\n"
    assert await env.ns["cache"].get("key", MISS) is MISS
    assert env.raw.exists("hiercache:key") == 0


async def check_3(env: Env) -> None:
    assert env.fakes.openai_client.calls == 1  # second call was a cache hit
    assert env.ns["models"] == [{"id": "gpt-4"}, {"id": "gpt-4o-mini"}]


async def check_4(env: Env) -> None:
    assert env.out == "25\n"
    assert env.fakes.sleeps == [0.5]
    async with env.ns["cache"].cached_operation("compute:5", lambda: 0) as again:
        assert again == 25  # cached: the lambda is not used


async def check_5(env: Env) -> None:
    assert env.ns["my_function"].cache_key(1, 2).startswith("my_operation:")


async def check_6(env: Env) -> None:
    assert env.fakes.db.calls == [("query", "user_123", True), ("query", "user_456", False)]
    assert env.ns["data1"] == env.ns["data2"] == {"user": "user_123", "history": [1, 2]}
    assert env.ns["data3"] == {"user": "user_456", "history": []}
    assert re.fullmatch(r"user_data:[0-9a-f]{16}", env.ns["get_user_data"].cache_key("u"))


async def check_7(env: Env) -> None:
    get_user_settings = env.ns["get_user_settings"]
    first = await get_user_settings("u1", 2)
    assert await get_user_settings("u1", 2) == first
    assert env.fakes.db.calls == [("get_settings", "u1", 2)]
    assert await get_cache_manager().get("user_u1_tier_2_settings") == first


async def check_8(env: Env) -> None:
    cache = env.ns["cache"]
    assert cache.config.serialization_format.value == "pickle"
    assert cache.config.l1_strategy is CacheStrategy.LRU
    assert cache.core.health.live  # CACHE_REDIS_URL points it at the test Redis


async def check_9(env: Env) -> None:
    config = env.ns["config"]
    assert (config.l1_max_size, config.l1_ttl_seconds) == (5000, 600)
    assert config.compression_enabled is False


async def check_10(env: Env) -> None:
    assert env.ns["config"].l1_strategy is CacheStrategy.ADAPTIVE


async def check_11(env: Env) -> None:
    lines = env.out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "Overall Hit Ratio",
        "L1 Hit Rate",
        "L2 Hit Rate",
    ]


async def check_12(env: Env) -> None:
    lines = env.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Cache Miss", "Cache Hit (avg)", "Speedup"]
    assert env.fakes.sleeps == [1.2]  # one LLM call; 100 cache hits


async def check_13(env: Env) -> None:
    get_metrics = env.ns["get_metrics"]
    assert await get_metrics() == await get_metrics() == {"rps": 12}
    assert env.fakes.metrics_db.calls == 1
    assert await env.ns["get_config"]() == {"flag": True}


async def check_14(env: Env) -> None:
    assert env.out == "Invalidated 2 user cache entries\n"
    assert await get_cache_manager().get("order:1") == {"k": "order:1"}


async def check_15(env: Env) -> None:
    (handler,) = env.fakes.event_bus.handlers["user.updated"]
    cache = get_cache_manager()
    await cache.set("user:42:profile", 1)
    await cache.set("user_settings_42_dark", 2)
    await cache.set("user:43:profile", 3)
    await handler("42")
    assert await cache.get("user:42:profile", MISS) is MISS
    assert await cache.get("user_settings_42_dark", MISS) is MISS
    assert await cache.get("user:43:profile") == 3


async def check_16(env: Env) -> None:
    fetch = env.ns["get_user_with_cache_aside"]
    assert await fetch("1") == await fetch("1") == env.fakes.db.users.rows["1"]
    assert env.fakes.db.users.calls == [("find_one", {"id": "1"})]


async def check_17(env: Env) -> None:
    updated = await env.ns["update_user_write_through"]("2", {"name": "Grace"})
    assert updated["name"] == "Grace"
    assert await get_cache_manager().get("user:2") == updated


async def check_18(env: Env) -> None:
    registry = env.fakes.observability.registry  # type: ignore[attr-defined]
    assert set(registry) == {
        "lukhas_cache_hits_total",
        "lukhas_cache_misses_total",
        "lukhas_cache_latency_seconds",
        "lukhas_cache_size_bytes",
        "lukhas_cache_entries",
    }
    assert registry["lukhas_cache_latency_seconds"].kwargs["buckets"][0] == 0.0001


async def check_19(env: Env) -> None:
    await get_cache_manager().set("user:7", {"id": 7})
    assert await env.ns["get_with_metrics"]("user:7") == {"id": 7}
    assert await env.ns["get_with_metrics"]("absent:1") is None
    assert env.ns["cache_hits"].events == [("inc", 1, {"key_pattern": "user"})]
    assert [e[0] for e in env.ns["cache_latency"].events] == ["observe", "observe"]


async def check_20(env: Env) -> None:
    assert env.out == "Warmed 3 user cache entries\n"
    cache = get_cache_manager()
    assert await cache.get("user:3") == env.fakes.db.users.rows["3"]
    assert await cache.get("user:5", MISS) is MISS  # not active: not warmed


async def check_21(env: Env) -> None:
    cache = get_cache_manager()
    assert env.ns["dreams"] == env.ns["large_data"]
    await cache.flush()
    payload = env.raw.get("hiercache:dream_collection")
    assert payload is not None
    assert payload[:2] == b"HC"
    assert payload[3] & COMPRESSED  # stored compressed in Redis
    fresh = HierarchicalCacheManager(CacheConfig())
    try:
        assert await fresh.get("dream_collection") == env.ns["large_data"]
    finally:
        await fresh.close()


async def check_22(env: Env) -> None:
    cache = get_cache_manager()
    assert await cache.get("metrics:current") == env.ns["metrics"]
    await cache.flush()
    assert 0 < env.raw.pttl("hiercache:metrics:current") <= 60_000
    assert 3_600_000 < env.raw.pttl("hiercache:config:system") <= 86_400_000


async def check_23(env: Env) -> None:
    cache = env.ns["cache"]
    assert cache.config.hierarchical_caching is True
    assert cache.core.health.live


async def check_26(env: Env) -> None:
    llm, ok = env.fakes.llm_client, env.ns["get_llm_response"]
    llm.fail = True
    with pytest.raises(ValueError, match="LLM error"):
        await ok("p")
    llm.fail = False
    assert await ok("p") == "completion of p"
    assert await ok("p") == "completion of p"
    assert llm.calls == ["p", "p"]  # the error was not cached; the success was


async def check_27(env: Env) -> None:
    cache = get_cache_manager()
    await cache.get("nope:1")
    await cache.get("nope:2")
    await env.ns["monitor_cache_health"]()
    assert [level for level, _ in env.fakes.logger.records] == ["warning", "critical"]
    assert "0.00%" in env.fakes.logger.records[0][1]


async def check_28(env: Env) -> None:
    assert env.ns["config"].l1_max_size == 10000
    assert re.fullmatch(r"L1 cache using \d+\.\d MB\n", env.out)


async def check_30(env: Env) -> None:
    assert env.ns["config"].l1_max_size == 500


async def check_31(env: Env) -> None:
    assert env.ns["config"].compression_threshold == 512


async def check_32(env: Env) -> None:
    assert env.ns["config"].l1_strategy is CacheStrategy.LFU


async def check_34(env: Env) -> None:
    assert inspect.iscoroutinefunction(env.ns["on_data_update"])


async def check_35(env: Env) -> None:
    assert env.ns["refreshed"] == ["called"]  # force_refresh bypassed the cached value
    assert await get_cache_manager().get("refresh:me") == "fresh"


async def check_36(env: Env) -> None:
    assert env.ns["config"].redis_port == 6379


async def check_37(env: Env) -> None:
    lines = env.out.splitlines()
    assert lines[0] == "Cache Performance Test Results"
    assert "Cache Hit Ratio: 50.00%" in lines
    assert env.fakes.sleeps == [0.1] * 10  # 10 misses ran the operation, 10 hits did not


def context_for(number: int, fakes: Fakes) -> dict[str, Any]:
    refreshed: list[str] = []

    async def operation() -> str:
        refreshed.append("called")
        return "fresh"

    available: dict[str, Callable[[], Any]] = {
        "cache": get_cache_manager,
        "cache_operation": lambda: cache_operation,
        "get_cache_manager": lambda: get_cache_manager,
        "CacheConfig": lambda: CacheConfig,
        "CacheStrategy": lambda: CacheStrategy,
        "HierarchicalCacheManager": lambda: HierarchicalCacheManager,
        "dream_data": lambda: SAMPLE,
        "metrics": lambda: {"rps": 12.5, "p95_ms": 3.1},
        "config": lambda: {"feature_flags": {"dreams": True}},
        "key": lambda: "refresh:me",
        "operation": lambda: operation,
    }
    context = {name: available[name]() for name in CONTEXT.get(number, ())}
    if number == 35:
        context["refreshed"] = refreshed
    return context


@pytest.fixture
async def seed_env(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[redis.Redis]:
    for name in list(os.environ):
        if name.startswith(("CACHE_", "REDIS_")) or name == "ENV":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("CACHE_REDIS_URL", redis_url)
    previous = hiercache.set_cache_manager(None)
    if previous is not None:
        await previous.close()
    raw = redis.Redis.from_url(redis_url)
    yield raw
    raw.close()
    mine = hiercache.set_cache_manager(None)
    if mine is not None:
        await mine.close()


#: Block numbers to run, known without reading the guide (the first test checks the headings).
RUNNABLE = [n for n in range(1, len(EXPECTED_HEADINGS) + 1) if n not in SKIPPED]


@pytest.mark.parametrize(
    "number", RUNNABLE, ids=[f"{n}-{EXPECTED_HEADINGS[n - 1]}" for n in RUNNABLE]
)
async def test_seed_example_runs(
    number: int,
    blocks: list[Block],
    seed_env: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    block = blocks[number - 1]
    fakes = Fakes()
    monkeypatch.setitem(sys.modules, "observability", fakes.observability)
    context = context_for(block.number, fakes)
    await prepare(block.number, seed_env, context)
    ns = namespace(fakes, context)
    try:
        await run_block(block, ns)
        env = Env(ns, fakes, seed_env, capsys.readouterr().out)
        checker = check(block.number)
        if checker is not None:
            await checker(env)
    finally:
        for value in list(ns.values()):
            if isinstance(value, HierarchicalCacheManager) and value is not (
                hiercache.default._default
            ):
                await value.close()


def test_every_runnable_block_has_a_check() -> None:
    unchecked = [n for n in RUNNABLE if check(n) is None]
    assert unchecked == []
