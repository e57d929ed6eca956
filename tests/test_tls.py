"""TLS to a real redis-server (``--tls-port``), with a private CA made by trustme."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

from hiercache import CacheConfig, HierarchicalCacheManager
from servers import RedisServer, run_redis


@pytest.fixture(scope="module")
def ca_and_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RedisServer]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tmp = tmp_path_factory.mktemp("tls")
    ca_file, chain, key = tmp / "ca.pem", tmp / "server-chain.pem", tmp / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    with run_redis(tls=(chain, key)) as server:
        yield ca_file, server


def raw_client(server: RedisServer, ca_file: Path) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(ca_file))


@pytest.mark.parametrize("how", ["host_port_ssl", "rediss_url"])
async def test_values_travel_over_tls(how: str, ca_and_server: tuple[Path, RedisServer]) -> None:
    ca_file, server = ca_and_server
    if how == "host_port_ssl":
        config = CacheConfig(
            redis_host="127.0.0.1",
            redis_port=server.port,
            redis_ssl=True,
            redis_ssl_ca_certs=str(ca_file),
            write_behind=False,
            key_prefix=f"{how}:",
        )
    else:
        config = CacheConfig(
            redis_url=f"rediss://127.0.0.1:{server.port}/0",
            redis_ssl_ca_certs=str(ca_file),
            write_behind=False,
            key_prefix=f"{how}:",
        )
    async with HierarchicalCacheManager(config) as cache:
        await cache.set("user:1", {"name": "Ada"})
        cache.l1.delete("user:1")
        assert await cache.get("user:1") == {"name": "Ada"}  # read back from L2, over TLS
        assert cache.sync.get("user:1") == {"name": "Ada"}  # and with the sync client
        stats = await cache.get_statistics()
        assert stats["l2_redis"]["available"] is True
        assert stats["l2_redis"]["hits"] == 1
    raw = raw_client(server, ca_file)
    assert (
        raw.get(
            f"{how}:user:1",
        )
        is not None
    )
    raw.close()


async def test_an_untrusted_certificate_means_l1_only_not_an_exception(
    ca_and_server: tuple[Path, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    _, server = ca_and_server
    caplog.set_level(logging.WARNING, logger="hiercache")
    # No CA given: the system store does not trust the test CA, so the handshake fails.
    config = CacheConfig(redis_url=f"rediss://127.0.0.1:{server.port}/0", write_behind=False)
    async with HierarchicalCacheManager(config) as cache:
        await cache.set("k", 1)
        assert await cache.get("k") == 1  # from L1
        stats = await cache.get_statistics()
        assert stats["l2_redis"]["available"] is False
        assert stats["l2_redis"]["errors"]["connection"] == 1
    assert any("not available" in r.getMessage() for r in caplog.records)


def test_plain_text_clients_are_refused_by_the_tls_port(
    ca_and_server: tuple[Path, RedisServer],
) -> None:
    _, server = ca_and_server
    plain = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=0.3, retry=None)
    # The TLS port answers a plain-text PING with a dropped connection or no reply at all.
    with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        plain.ping()
    plain.close()
