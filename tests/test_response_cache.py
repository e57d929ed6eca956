"""The response cache (``hiercache.contrib.starlette.ResponseCache``) over HTTP, against a
real uvicorn process and a real redis-server: what it caches, what it never caches, ETags,
304s, ``Vary``, ``Cache-Control`` from the request, and the body-size cap."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import free_port

SRC = str(Path(__file__).resolve().parents[1] / "src")

APP = textwrap.dedent(
    """
    import os
    from collections import Counter
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route
    from hiercache import CacheConfig, HierarchicalCacheManager
    from hiercache.contrib.starlette import ResponseCache, hiercache_lifespan

    cache = HierarchicalCacheManager(CacheConfig(redis_url=os.environ["TEST_REDIS_URL"],
                                                 write_through=True, telemetry_enabled=False))
    calls = Counter()

    def counted(name, make):
        async def endpoint(request):
            calls[name] += 1
            return make(request, calls[name])
        return Route("/" + name, endpoint, methods=["GET", "HEAD", "POST"])

    async def report(request):
        return JSONResponse(dict(calls), headers={"cache-control": "no-store"})

    routes = [
        counted("hello", lambda r, n: PlainTextResponse(f"hello {n}")),
        counted("vary", lambda r, n: PlainTextResponse(
            f"{r.headers.get('accept-language', '-')} {n}", headers={"vary": "Accept-Language"})),
        counted("cookie", lambda r, n: _cookie(n)),
        counted("private", lambda r, n: PlainTextResponse(
            f"mine {n}", headers={"cache-control": "private"})),
        counted("big", lambda r, n: Response(b"x" * 2_000_000 + str(n).encode())),
        counted("missing", lambda r, n: PlainTextResponse(f"no {n}", status_code=404)),
        Route("/calls", report),
    ]

    def _cookie(n):
        response = PlainTextResponse(f"cookie {n}")
        response.set_cookie("session", "secret")
        return response

    app = Starlette(routes=routes, lifespan=hiercache_lifespan(cache))
    app.add_middleware(ResponseCache, cache=cache, ttl_seconds=60, max_body_bytes=1_000_000)
    """
)


@pytest.fixture
def web(tmp_path: Path, redis_url: str) -> Iterator[httpx.Client]:
    (tmp_path / "cached_app.py").write_text(APP)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "TEST_REDIS_URL": redis_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "cached_app:app", "--port", str(port), "--no-access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if re.search(r"Uvicorn running on", line):
            break
    else:
        raise AssertionError("uvicorn did not start:\n" + "".join(seen))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    proc.terminate()
    proc.wait(timeout=30)


def calls(web: httpx.Client) -> dict[str, int]:
    return dict(web.get("/calls").json())


def test_a_get_is_served_from_the_cache_with_an_etag_and_max_age(web: httpx.Client) -> None:
    first = web.get("/hello")
    second = web.get("/hello", params={})
    assert first.text == second.text == "hello 1"
    assert calls(web)["hello"] == 1
    etag = second.headers["etag"]
    assert etag.startswith('W/"')
    assert second.headers["cache-control"] == "max-age=60"
    not_modified = web.get("/hello", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    head = web.head("/hello")
    assert head.status_code == 200
    assert head.content == b""
    assert calls(web)["hello"] == 1


def test_request_no_cache_fetches_anew_and_refreshes_the_entry(web: httpx.Client) -> None:
    assert web.get("/hello").text == "hello 1"
    assert web.get("/hello", headers={"Cache-Control": "no-cache"}).text == "hello 2"
    assert web.get("/hello").text == "hello 2"  # the fresh response replaced the entry
    assert web.get("/hello", headers={"Cache-Control": "no-store"}).text == "hello 3"
    assert web.get("/hello").text == "hello 2"  # no-store: not kept


def test_vary_is_honoured(web: httpx.Client) -> None:
    en = web.get("/vary", headers={"Accept-Language": "en"}).text
    fr = web.get("/vary", headers={"Accept-Language": "fr"}).text
    assert (en, fr) == ("en 1", "fr 2")
    assert web.get("/vary", headers={"Accept-Language": "en"}).text == "en 1"
    assert web.get("/vary", headers={"Accept-Language": "fr"}).text == "fr 2"
    assert calls(web)["vary"] == 2


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/cookie", {}),  # a response that sets a cookie
        ("/private", {}),  # Cache-Control: private
        ("/missing", {}),  # not a 200
        ("/big", {}),  # over max_body_bytes
        ("/hello", {"Authorization": "Bearer t"}),  # a request with credentials
        ("/hello", {"Cookie": "session=1"}),
    ],
)
def test_what_is_never_cached(web: httpx.Client, path: str, headers: dict[str, str]) -> None:
    first = web.get(path, headers=headers)
    second = web.get(path, headers=headers)
    assert first.content != second.content  # the app answered both
    assert calls(web)[path.strip("/")] == 2


def test_post_is_passed_through(web: httpx.Client) -> None:
    assert web.post("/hello").text == "hello 1"
    assert web.post("/hello").text == "hello 2"
