"""HiercacheCache beyond Django's own suite: sharing, close(), async, timeouts, atomicity,
single-flight, cache_page and sessions across processes, settings errors. Real Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest
import redis

pytest.importorskip("django", reason="the django extra is not installed")

import django
from django.conf import settings

SECRET = "test-site-secret"

if not settings.configured:
    settings.configure(
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["django.contrib.sessions"],
        CACHES={},
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
    )
    django.setup()

from django.core.cache import CacheHandler  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.views.decorators.cache import cache_page  # noqa: E402

from hiercache.contrib.django import HiercacheCache, shutdown_managers  # noqa: E402

BACKEND = "hiercache.contrib.django.HiercacheCache"


@pytest.fixture
def caches(redis_url: str) -> Iterator[CacheHandler]:
    handler = CacheHandler(
        {
            "default": {"BACKEND": BACKEND, "LOCATION": redis_url},
            "other": {"BACKEND": BACKEND, "LOCATION": redis_url, "KEY_PREFIX": "other"},
        }
    )
    yield handler
    shutdown_managers()


def test_threads_and_aliases_share_one_manager_and_close_keeps_it(
    caches: CacheHandler,
) -> None:
    mine = caches["default"]
    theirs: list[HiercacheCache] = []
    t = threading.Thread(target=lambda: theirs.append(CacheHandler(caches.settings)["default"]))
    t.start()
    t.join()
    assert theirs[0] is not mine  # Django's one object per thread ...
    assert theirs[0].manager is mine.manager is caches["other"].manager  # ... one manager
    mine.set("k", 1)
    caches.close_all()  # what Django does at the end of every request
    assert theirs[0].get("k") == 1
    stats = mine.manager.sync.get_statistics()
    assert stats == theirs[0].manager.sync.get_statistics()
    assert mine.manager.write_behind is None  # write-through by default here


def test_async_methods_survive_short_lived_loops(caches: CacheHandler) -> None:
    cache = caches["default"]
    for i in range(3):  # each asyncio.run() is a new loop, closed afterwards
        asyncio.run(cache.aset("k", i))
        assert asyncio.run(cache.aget("k")) == i
    assert asyncio.run(cache.aget_or_set("g", lambda: "loaded")) == "loaded"


def test_timeouts_none_is_forever_and_zero_is_not_cached(
    caches: CacheHandler, raw: redis.Redis
) -> None:
    cache = caches["default"]
    cache.set("forever", "x", None)
    key = "hiercache:" + cache.make_key("forever")
    assert raw.pttl(key) == -1  # no expiry
    cache.set("one", "x", 1)
    assert cache.touch("one", None)
    assert raw.pttl("hiercache:" + cache.make_key("one")) == -1
    assert cache.add("added", "x", None)
    assert raw.pttl("hiercache:" + cache.make_key("added")) == -1
    cache.set("gone", "x", 0)
    assert cache.get("gone") is None
    assert not raw.exists("hiercache:" + cache.make_key("gone"))
    cache.set("short", "x", 30)
    assert 29_000 < raw.pttl("hiercache:" + cache.make_key("short")) <= 30_000


def test_incr_is_atomic_across_threads(caches: CacheHandler) -> None:
    cache = caches["default"]
    cache.set("n", 0, 60)
    start = threading.Barrier(8)

    def work() -> None:
        backend = CacheHandler(caches.settings)["default"]  # per thread, as Django does
        start.wait()
        for _ in range(25):
            backend.incr("n")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get("n") == 200
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    cache.set("s", "text")
    with pytest.raises(TypeError, match="not a number"):
        cache.incr("s")


def test_add_is_atomic_one_winner(caches: CacheHandler) -> None:
    start = threading.Barrier(8)
    won: list[int] = []

    def work(i: int) -> None:
        backend = CacheHandler(caches.settings)["default"]
        start.wait()
        if backend.add("lock", i, 60):
            won.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert caches["default"].get("lock") == won[0]


def test_get_or_set_loads_once_through_single_flight(caches: CacheHandler) -> None:
    cache = caches["default"]
    calls: list[int] = []
    release = threading.Event()

    def slow() -> str:
        calls.append(1)
        release.wait(10)
        return "v"

    first = threading.Thread(target=lambda: cache.get_or_set("k", slow, 60))
    first.start()
    while not cache.manager.sync.is_loading(cache.make_key("k")):
        threading.Event().wait(0.001)
    results: list[str] = []
    second = threading.Thread(target=lambda: results.append(cache.get_or_set("k", slow, 60)))
    second.start()
    release.set()
    first.join()
    second.join()
    assert results == ["v"]
    assert len(calls) == 1
    stats = cache.manager.sync.get_statistics()
    assert stats["loads"]["success"] == 1


def test_cache_page_caches_a_response(
    caches: CacheHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    import django.core.cache

    monkeypatch.setattr(django.core.cache, "caches", caches)
    import django.middleware.cache

    monkeypatch.setattr(django.middleware.cache, "caches", caches)
    calls: list[int] = []

    @cache_page(60)
    def view(request: object) -> HttpResponse:
        calls.append(1)
        return HttpResponse(f"page {len(calls)}")

    request = RequestFactory().get("/page")
    assert view(request).content == b"page 1"
    assert view(RequestFactory().get("/page")).content == b"page 1"
    assert len(calls) == 1


def test_values_and_sessions_cross_processes_with_the_derived_key(
    caches: CacheHandler, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process of the same site (same SECRET_KEY) reads what this one wrote, a
    session included; a site with another SECRET_KEY cannot (the pickle frame's signature
    does not verify)."""
    import django.contrib.sessions.backends.cache as session_cache

    monkeypatch.setattr(session_cache, "caches", caches)
    caches["default"].set("obj", {"t": (1, 2)}, 60)
    session = session_cache.SessionStore()
    session["cart"] = ("book", 2)
    session.save()
    script = textwrap.dedent(
        f"""
        import sys, django
        from django.conf import settings
        settings.configure(SECRET_KEY=sys.argv[1], CACHES={{"default": {{
            "BACKEND": "{BACKEND}", "LOCATION": "{redis_url}"}}}},
            INSTALLED_APPS=["django.contrib.sessions"],
            SESSION_ENGINE="django.contrib.sessions.backends.cache")
        django.setup()
        from django.core.cache import cache
        from django.contrib.sessions.backends.cache import SessionStore
        print(cache.get("obj"), SessionStore(session_key=sys.argv[2]).get("cart"))
        """
    )
    key = str(session.session_key)
    same = subprocess.run(
        [sys.executable, "-c", script, SECRET, key], capture_output=True, text=True, check=True
    )
    assert same.stdout.strip() == "{'t': (1, 2)} ('book', 2)"
    other = subprocess.run(
        [sys.executable, "-c", script, "another-site", key],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == "None None"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"l1_max_sise": 10}, "l1_max_sise"),
        ({"l1_max_size": -1}, "l1_max_size"),
        ({"l2_backend": "none"}, "l2_backend"),
    ],
)
def test_bad_options_name_the_setting(options: dict[str, object], named: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=named):
        HiercacheCache("redis://localhost:1/0", {"OPTIONS": options})


def test_explicit_write_behind_and_json_are_honoured(redis_url: str) -> None:
    backend = HiercacheCache(
        redis_url, {"OPTIONS": {"write_behind": True, "serialization_format": "json"}}
    )
    try:
        assert backend.manager.write_behind is not None
        assert backend.config.serialization_format.value == "json"
        assert backend.config.signing_key is None
    finally:
        shutdown_managers()


def test_atomic_operations_reach_other_caches_l1_through_the_backplane(redis_url: str) -> None:
    """Two managers (as two processes would have): incr, touch and add in one drop the
    other's L1 copy via the backplane, so its next read sees the new value."""
    handler = CacheHandler(
        {
            "a": {"BACKEND": BACKEND, "LOCATION": redis_url, "OPTIONS": {"name": "a"}},
            "b": {"BACKEND": BACKEND, "LOCATION": redis_url, "OPTIONS": {"name": "b"}},
        }
    )
    a, b = handler["a"], handler["b"]
    try:
        assert a.manager is not b.manager
        a.set("n", 1, 60)
        assert b.get("n") == 1  # now in b's L1
        coherence = b.manager.core.coherence
        assert coherence is not None
        assert coherence.subscriber is not None
        assert coherence.subscriber.wait_up(10)
        before = b.manager.sync.get_statistics()["l1_memory"]["evictions"]["invalidated"]
        a.incr("n")
        received = threading.Event()

        def invalidated() -> bool:
            evictions = b.manager.sync.get_statistics()["l1_memory"]["evictions"]
            return bool(evictions["invalidated"] > before)

        deadline = 100
        while not invalidated() and deadline:  # the message crosses Redis asynchronously
            received.wait(0.05)
            deadline -= 1
        assert b.get("n") == 2
    finally:
        shutdown_managers()


def test_atomic_operations_fall_back_to_l1_while_redis_is_down() -> None:
    from servers import free_port

    backend = HiercacheCache(
        f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        {"OPTIONS": {"name": "down", "l2_connect_timeout_seconds": 0.2}},
    )
    try:
        assert backend.add("a", 1, 60)
        assert not backend.add("a", 2, 60)
        assert backend.incr("a", 5) == 6
        assert backend.get("a") == 6
        assert backend.touch("a", 60)
        assert not backend.touch("missing", 60)
        with pytest.raises(ValueError, match="not found"):
            backend.incr("missing")
        assert not backend.manager.sync.get_statistics()["l2_redis"]["available"]
    finally:
        shutdown_managers()
