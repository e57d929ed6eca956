"""``ResponseCache``: an ASGI middleware that caches whole HTTP responses in a hiercache.

::

    app = Starlette(routes=...)           # or FastAPI()
    app.add_middleware(ResponseCache, cache=cache, ttl_seconds=60)

Safe by default, because a shared cache that answers one user with another's page is a
security bug, not a performance one:

- only ``GET`` and ``HEAD`` (which share entries), only ``200`` responses;
- never a response with ``Set-Cookie``, ``Cache-Control: private`` or ``no-store``, or a
  ``Vary: *``; never a request with ``Authorization`` or ``Cookie`` unless
  ``cache_private_requests=True``;
- a body larger than ``max_body_bytes`` is passed through, not stored;
- ``Vary`` is honoured: the entry is keyed by the request headers the response varies on.

A request's ``Cache-Control: no-cache`` (or ``no-store``) skips the cached entry (a fresh
response replaces it, unless ``no-store``). Responses get an ``ETag`` (a digest of the
body) and, when the application set none, ``Cache-Control: max-age=<ttl_seconds>``; a
request whose ``If-None-Match`` names the current ETag gets ``304 Not Modified``. Entries
live in the cache's L1 and L2 like any value (``bytes``), under ``key_prefix``, so
``cache.invalidate_prefix("http:")`` drops them all. Starlette is not imported: this is
plain ASGI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

import orjson

from hiercache.core import MISS
from hiercache.manager import HierarchicalCacheManager

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PRIVATE_REQUEST = (b"authorization", b"cookie")


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Lower-cased header names -> values (repeated headers joined with ", ")."""
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        name = name.lower()
        found[name] = found[name] + b", " + value if name in found else value
    return found


def _directives(value: bytes | None) -> set[str]:
    if not value:
        return set()
    return {part.strip().split("=", 1)[0].lower() for part in value.decode("latin-1").split(",")}


class ResponseCache:
    def __init__(
        self,
        app: ASGIApp,
        cache: HierarchicalCacheManager,
        ttl_seconds: float = 60,
        *,
        max_body_bytes: int = 1024 * 1024,
        key_prefix: str = "http:",
        cache_private_requests: bool = False,
    ) -> None:
        self.app = app
        self.cache = cache
        self.ttl_seconds = ttl_seconds
        self.max_body_bytes = max_body_bytes
        self.key_prefix = key_prefix
        self.cache_private_requests = cache_private_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        request = _headers(list(scope.get("headers", [])))
        if not self.cache_private_requests and any(h in request for h in _PRIVATE_REQUEST):
            await self.app(scope, receive, send)
            return
        control = _directives(request.get(b"cache-control"))
        base = self._base_key(scope)
        if not control & {"no-cache", "no-store"}:
            hit = await self._lookup(base, request)
            if hit is not None:
                await self._answer(scope, send, request, *hit)
                return
        await self._fetch_and_store(scope, receive, send, base, request, "no-store" in control)

    # -- keys: the URL, then the values of the headers the response varies on --------------
    def _base_key(self, scope: Scope) -> str:
        host = _headers(list(scope.get("headers", []))).get(b"host", b"").decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        path = quote(scope.get("path", "/"))
        return f"{self.key_prefix}{scope.get('scheme', 'http')}://{host}{path}?{query}"

    @staticmethod
    def _varied_key(base: str, vary: list[str], request: dict[bytes, bytes]) -> str:
        parts = [f"{name}={request.get(name.encode(), b'').decode('latin-1')}" for name in vary]
        digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=8).hexdigest()
        return f"{base}#vary:{digest}" if vary else base

    async def _lookup(
        self, base: str, request: dict[bytes, bytes]
    ) -> tuple[list[list[str]], bytes] | None:
        vary = await self.cache.get(base + "#vary", MISS)
        if vary is MISS or not isinstance(vary, list):
            return None
        stored = await self.cache.get(self._varied_key(base, vary, request), MISS)
        if not isinstance(stored, bytes) or b"\n" not in stored:
            return None
        head, body = stored.split(b"\n", 1)
        headers = orjson.loads(head)
        return headers, body

    # -- answering ------------------------------------------------------------------------
    async def _answer(
        self,
        scope: Scope,
        send: Send,
        request: dict[bytes, bytes],
        headers: list[list[str]],
        body: bytes,
    ) -> None:
        etag = next((v for k, v in headers if k == "etag"), None)
        match = request.get(b"if-none-match", b"").decode("latin-1")
        if etag is not None and etag in [m.strip() for m in match.split(",")]:
            keep = [(k.encode(), v.encode()) for k, v in headers if k in ("etag", "cache-control")]
            await send({"type": "http.response.start", "status": 304, "headers": keep})
            await send({"type": "http.response.body", "body": b""})
            return
        raw = [(k.encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _fetch_and_store(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        base: str,
        request: dict[bytes, bytes],
        no_store: bool,
    ) -> None:
        started: Message | None = None
        chunks: list[bytes] = []
        size = 0
        passing = False  # once the body is too big (or not cacheable): stream it through

        async def capture(message: Message) -> None:
            nonlocal started, size, passing
            if message["type"] == "http.response.start":
                started = message
                if not self._cacheable(message) or no_store or scope["method"] == "HEAD":
                    passing = True
                    await send(message)
                return
            if message["type"] != "http.response.body" or passing:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:  # too big to keep: send what we held, go on
                passing = True
                await send(started or {})
                await send({"type": "http.response.body", "body": b"".join(chunks),
                            "more_body": message.get("more_body", False)})  # fmt: skip
                return
            if not message.get("more_body", False):
                await self._store_and_send(started or {}, b"".join(chunks), base, request, send)

        await self.app(scope, receive, capture)

    def _cacheable(self, start: Message) -> bool:
        if start.get("status") != 200:
            return False
        headers = _headers(list(start.get("headers", [])))
        if b"set-cookie" in headers:
            return False
        if _directives(headers.get(b"cache-control")) & {"private", "no-store"}:
            return False
        return headers.get(b"vary", b"").strip() != b"*"

    async def _store_and_send(
        self,
        start: Message,
        body: bytes,
        base: str,
        request: dict[bytes, bytes],
        send: Send,
    ) -> None:
        raw = [(k.lower(), v) for k, v in start.get("headers", [])]
        names = {k for k, _ in raw}
        etag = 'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        if b"etag" not in names:
            raw.append((b"etag", etag.encode()))
        if b"cache-control" not in names:
            raw.append((b"cache-control", f"max-age={int(self.ttl_seconds)}".encode()))
        vary_value = _headers(raw).get(b"vary", b"").decode("latin-1")
        vary = sorted({v.strip().lower() for v in vary_value.split(",") if v.strip()})
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in raw]
        entry = orjson.dumps(headers) + b"\n" + body
        await self.cache.set(base + "#vary", vary, self.ttl_seconds)
        await self.cache.set(self._varied_key(base, vary, request), entry, self.ttl_seconds)
        await send({**start, "headers": raw})
        await send({"type": "http.response.body", "body": body})
