"""``hiercache.contrib.starlette.hiercache_lifespan``: the cache starts with the application
and is flushed and closed when it stops, in process (Starlette's TestClient) and under a
real uvicorn stopped with SIGTERM; importing it never needs Starlette."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from hiercache import CacheConfig, HierarchicalCacheManager
from hiercache.contrib.starlette import hiercache_lifespan
from hiercache.health import L2State
from redis_tools import PREFIX
from servers import drain_in_background, free_port, wait_for_line
from test_write_behind import count_keys, stored

if TYPE_CHECKING:  # imported at run time by pytest_plugins only, so pytest can rewrite it
    from tcp_proxy import TcpProxy

pytest_plugins = ["tcp_proxy"]


def fill_route(cache: HierarchicalCacheManager) -> Route:
    async def fill(request: Request) -> JSONResponse:
        n = int(request.query_params["n"])
        for i in range(n):
            await cache.set(f"item:{i}", i, ttl_seconds=600)
        assert cache.write_behind is not None
        return JSONResponse({"unsent": cache.write_behind.unsent})

    return Route("/fill", fill, methods=["POST"])


def test_the_lifespan_starts_the_cache_and_flushes_it_at_shutdown(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    redis_proxy.delay(100)  # writes are still queued when the application stops
    cache = HierarchicalCacheManager(CacheConfig(redis_url=redis_proxy.url))
    app = Starlette(routes=[fill_route(cache)], lifespan=hiercache_lifespan(cache))
    with TestClient(app) as client:
        assert cache.core.health.state is L2State.CLOSED  # started: the ping answered
        assert client.post("/fill?n=2000").json()["unsent"] > 0
    assert cache.write_behind is not None
    assert cache.write_behind.unsent == 0
    assert count_keys(raw, PREFIX + "item:*") == 2000


def test_the_lifespan_wraps_the_application_s_own(redis_url: str, raw: redis.Redis) -> None:
    events: list[str] = []
    cache = HierarchicalCacheManager(CacheConfig(redis_url=redis_url))

    @asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append(f"own start, cache {cache.core.health.state.value}")
        yield {"greeting": "hello"}
        await cache.set("written-at-shutdown", 1)  # the cache is still open here
        events.append("own stop")

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting})

    app = Starlette(routes=[Route("/", hello)], lifespan=hiercache_lifespan(cache, own))
    with TestClient(app) as client:
        assert client.get("/").json() == {"greeting": "hello"}
    assert events == ["own start, cache closed", "own stop"]
    assert stored(raw, "written-at-shutdown") == 1


APP = """
import os
from starlette.applications import Starlette
from hiercache import CacheConfig, HierarchicalCacheManager
from hiercache.contrib.starlette import hiercache_lifespan
from test_starlette_lifespan import fill_route

cache = HierarchicalCacheManager(CacheConfig(redis_url=os.environ["HIERCACHE_TEST_URL"]))
app = Starlette(routes=[fill_route(cache)], lifespan=hiercache_lifespan(cache))
"""


def test_uvicorn_stopped_by_sigterm_loses_no_write(
    redis_proxy: TcpProxy, raw: redis.Redis, tmp_path: Path
) -> None:
    redis_proxy.delay(100)
    (tmp_path / "service.py").write_text(APP)
    port = free_port()
    tests = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service:app", "--port", str(port)],
        cwd=tmp_path,
        env={"HIERCACHE_TEST_URL": redis_proxy.url, "PYTHONPATH": tests, "PATH": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_line(proc, "Application startup complete", "uvicorn")
        drain_in_background(proc)
        answer = httpx.post(f"http://127.0.0.1:{port}/fill?n=10000", timeout=60)
        assert answer.json()["unsent"] > 0
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (lifespan shutdown), then re-raises the signal
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert count_keys(raw, PREFIX + "item:*") == 10_000


def test_importing_the_helper_needs_no_starlette() -> None:
    code = """
import sys
class NoStarlette:
    def find_spec(self, name, path=None, target=None):
        if name == "starlette" or name.startswith("starlette."):
            raise ImportError("starlette is not installed")
sys.meta_path.insert(0, NoStarlette())
import hiercache, hiercache.contrib.starlette, hiercache.shutdown
print(hiercache.contrib.starlette.hiercache_lifespan.__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hiercache_lifespan"
