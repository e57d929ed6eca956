"""Where L2 lives: one Redis, a Redis Cluster or a Sentinel-managed primary, from ``redis_url``.

=====================================================================  ==========================
``redis://`` ``rediss://`` ``unix://``                                  one server (redis-py's
                                                                        own URL syntax)
``redis+cluster://[[user]:password@]host:port[,host:port...]``          Redis Cluster: any
(``rediss+cluster://`` for TLS)                                         reachable nodes seed it
``redis+sentinel://[[user]:password@]host:port[,...]/service[/db]``     the primary of
(``rediss+sentinel://`` for TLS)                                        ``service``, as the
                                                                        sentinels name it
=====================================================================  ==========================

The userinfo is the data nodes' credentials. Query parameters (all optional):
``ssl_ca_certs`` (a CA bundle for TLS), and for Sentinel ``sentinel_username``,
``sentinel_password`` (the sentinels' own credentials; default none) and ``sentinel_ssl``
(``true``/``false``; default: the data nodes' TLS). redis-py has no ``Sentinel.from_url``,
so the URL is parsed here; errors name ``redis_url`` and never echo the password.
"""

from __future__ import annotations

import os
from binascii import crc_hqx
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.exceptions import RedisClusterException

CLUSTER_SCHEMES: Final = {"redis+cluster": False, "rediss+cluster": True}
SENTINEL_SCHEMES: Final = {"redis+sentinel": False, "rediss+sentinel": True}
STANDALONE_SCHEMES: Final = ("redis", "rediss", "unix")
_CLUSTER_PARAMS: Final = frozenset({"ssl_ca_certs"})
_SENTINEL_PARAMS: Final = frozenset(
    {"ssl_ca_certs", "sentinel_username", "sentinel_password", "sentinel_ssl"}
)
_BOOLS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class Topology(str, Enum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


class RedisUrlError(ValueError):
    """``redis_url`` is malformed; the message names the part, never the password."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"redis_url: {reason}")


@dataclass(frozen=True)
class MultiHostUrl:
    """A parsed ``redis+cluster://`` or ``redis+sentinel://`` URL."""

    topology: Topology
    scheme: str
    hosts: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str = ""
    db: int = 0
    ssl_ca_certs: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False

    @property
    def target(self) -> str:
        """Where L2 lives, without credentials: safe to log."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        path = f"/{self.service}/{self.db}" if self.topology is Topology.SENTINEL else ""
        return f"{self.scheme}://{hosts}{path}"


def topology_of(url: str) -> Topology:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in CLUSTER_SCHEMES:
        return Topology.CLUSTER
    if scheme in SENTINEL_SCHEMES:
        return Topology.SENTINEL
    if scheme in STANDALONE_SCHEMES:
        return Topology.STANDALONE
    known = ", ".join(f"{s}://" for s in (*STANDALONE_SCHEMES, *CLUSTER_SCHEMES, *SENTINEL_SCHEMES))
    raise RedisUrlError(f"must start with {known}")


def _host(text: str, default_port: int) -> tuple[str, int]:
    if not text:
        raise RedisUrlError("an empty host in the host list")
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise RedisUrlError(f"host {text!r} is not [address]:port")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise RedisUrlError(f"host {text!r} has no name")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise RedisUrlError(f"host {host!r} has a port outside 1-65535")
    return host, int(port_text)


def _flag(name: str, value: str) -> bool:
    if value.lower() not in _BOOLS:
        raise RedisUrlError(f"query parameter {name!r} must be true or false")
    return _BOOLS[value.lower()]


def parse_multi_host(url: str) -> MultiHostUrl:
    """Parse a Cluster or Sentinel URL; raises ``RedisUrlError`` on anything malformed."""
    topology = topology_of(url)
    if topology is Topology.STANDALONE:
        raise RedisUrlError("not a redis+cluster:// or redis+sentinel:// URL")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    parts = urlsplit("x://" + rest.replace("#", "%23"))  # the netloc is parsed by hand below
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if password == "":
            password = None
    is_sentinel = topology is Topology.SENTINEL
    hosts = tuple(_host(h.strip(), 26379 if is_sentinel else 6379) for h in hostlist.split(","))
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    allowed = _SENTINEL_PARAMS if is_sentinel else _CLUSTER_PARAMS
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise RedisUrlError(
            f"unknown query parameter {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
        )
    tls = (SENTINEL_SCHEMES if is_sentinel else CLUSTER_SCHEMES)[scheme]
    service, db = "", 0
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if is_sentinel:
        if not segments or not segments[0]:
            raise RedisUrlError("a Sentinel URL needs the service name: .../service_name[/db]")
        if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
            raise RedisUrlError("after the service name only a database number may follow")
        service = segments[0]
        db = int(segments[1]) if len(segments) == 2 else 0
    elif any(segments):
        raise RedisUrlError("a Cluster URL has no path (Redis Cluster has only database 0)")
    return MultiHostUrl(
        topology=topology,
        scheme=scheme,
        hosts=hosts,
        tls=tls,
        username=username,
        password=password,
        service=service,
        db=db,
        ssl_ca_certs=query.get("ssl_ca_certs") or None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        sentinel_tls=_flag("sentinel_ssl", query["sentinel_ssl"])
        if "sentinel_ssl" in query
        else tls,
    )


def server_address(url: str) -> tuple[str, int | None]:
    """The (first) server of ``url``, for spans: (host, port), or (socket path, None)."""
    if topology_of(url) is not Topology.STANDALONE:
        return parse_multi_host(url).hosts[0]
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path, None
    return parts.hostname or "localhost", parts.port or 6379


def check_redis_url(url: str) -> None:
    """Raise ``RedisUrlError`` if ``url`` is not a usable ``redis_url``."""
    topology = topology_of(url)
    if topology is not Topology.STANDALONE:
        parse_multi_host(url)
        return
    try:
        urlsplit(url).port  # noqa: B018 - raises on a port outside 0-65535
    except ValueError:
        raise RedisUrlError("has a port outside 1-65535") from None


def make_client(
    spec: MultiHostUrl, aio: bool, common: dict[str, Any], ssl_ca_certs: str | None
) -> Any:
    """The Cluster or Sentinel client of ``spec`` (``ssl_ca_certs``: the setting's CA)."""
    if spec.tls and ssl_ca_certs and not spec.ssl_ca_certs:
        common = {**common, "ssl_ca_certs": ssl_ca_certs}
    if spec.topology is Topology.CLUSTER:
        return make_cluster_client(spec, aio, common)
    return make_sentinel_client(spec, aio, common)


def key_slot(key: bytes) -> int:
    """The Redis Cluster hash slot of ``key``: CRC16 (XMODEM, which ``binascii.crc_hqx``
    computes in C) of its hash tag, or of the whole key without one, modulo 16384."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & 16383


def slot_groups(keys: list[str]) -> list[list[int]]:
    """Positions of ``keys`` grouped by Redis Cluster hash slot, in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(i)
    return list(groups.values())


#: A cluster-wide SCAN cursor: the primary's index above these bits, its cursor below.
NODE_CURSOR_BITS: Final = 64


def split_cursor(cursor: int) -> tuple[int, int]:
    """(index of the primary to scan, that primary's own cursor)."""
    return cursor >> NODE_CURSOR_BITS, cursor & ((1 << NODE_CURSOR_BITS) - 1)


def next_cursor(index: int, node_cursor: int, primaries: int) -> int:
    """The cluster-wide cursor after a primary answered ``node_cursor``; 0 when done."""
    if node_cursor:
        return (index << NODE_CURSOR_BITS) | node_cursor
    return (index + 1) << NODE_CURSOR_BITS if index + 1 < primaries else 0


def no_pipeline(pipe: Any) -> None:
    """The build of a recipe that runs a direct call instead of a pipeline."""


async def aping(client: Any) -> list[Any]:
    """PING every primary of an asyncio ``RedisCluster`` (as a one-reply list)."""
    return [await client.ping()]


def _after(index: int, primaries: list[Any], reply: Any) -> tuple[int, list[bytes]]:
    node_cursors, found = reply  # ({node name: cursor}, keys)
    after = next(iter(node_cursors.values())) if isinstance(node_cursors, dict) else node_cursors
    return next_cursor(index, int(after), len(primaries)), list(found)


def _primaries(client: Any) -> list[Any]:
    return sorted(client.get_primaries(), key=lambda node: node.name)


def scan_primaries(client: Any, cursor: int, match: str, count: int) -> tuple[int, list[bytes]]:
    """One SCAN step over a whole Cluster (sync ``RedisCluster``): ``cursor`` names a primary
    (sorted by address) and its own cursor; a finished primary hands over to the next, and
    the cursor is 0 after the last."""
    index, node_cursor = split_cursor(cursor)
    primaries = _primaries(client)
    if index >= len(primaries):  # the cluster shrank under the scan
        return 0, []
    args = ("SCAN", node_cursor, "MATCH", match, "COUNT", count)
    return _after(index, primaries, client.execute_command(*args, target_nodes=primaries[index]))


async def ascan_primaries(
    client: Any, cursor: int, match: str, count: int
) -> list[tuple[int, list[bytes]]]:
    """``scan_primaries`` on an asyncio ``RedisCluster`` (as a one-reply list)."""
    await client.initialize()  # a no-op once the slot map is known
    index, node_cursor = split_cursor(cursor)
    primaries = _primaries(client)
    if index >= len(primaries):
        return [(0, [])]
    args = ("SCAN", node_cursor, "MATCH", match, "COUNT", count)
    reply = await client.execute_command(*args, target_nodes=primaries[index])
    return [_after(index, primaries, reply)]


#: What redis-py's cluster client itself may raise while the topology changes under it
#: (e.g. AttributeError when its default node has just been removed, redis-py 8.1).
CLIENT_QUIRKS: Final = (AttributeError, KeyError, IndexError)


def as_cluster_error(exc: BaseException) -> BaseException:
    """``exc`` as a cluster error if redis-py's cluster client raised one of its quirks
    (typed ``topology``); a quirk raised outside redis-py is a bug and is raised again."""
    if not isinstance(exc, CLIENT_QUIRKS):
        return exc
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or f"{os.sep}redis{os.sep}" not in tb.tb_frame.f_code.co_filename:
        raise exc
    return RedisClusterException(f"cluster client failed mid-change: {type(exc).__name__}")


def make_cluster_client(spec: MultiHostUrl, aio: bool, common: dict[str, Any]) -> Any:
    """A redis-py ``RedisCluster`` (asyncio or sync) seeded with the URL's nodes."""
    import redis.asyncio.cluster
    import redis.cluster

    mod: Any = redis.asyncio.cluster if aio else redis.cluster
    kwargs = _data_kwargs(spec, common)
    kwargs.pop("db", None)
    kwargs.pop("health_check_interval", None)
    return mod.RedisCluster(
        startup_nodes=[mod.ClusterNode(host, port) for host, port in spec.hosts], **kwargs
    )


def make_sentinel_client(spec: MultiHostUrl, aio: bool, common: dict[str, Any]) -> Any:
    """A client of the primary of ``spec.service``, looked up from the sentinels on every
    new connection (redis-py's ``SentinelConnectionPool``)."""
    import redis
    import redis.asyncio
    import redis.asyncio.sentinel
    import redis.sentinel

    skw = sentinel_kwargs(spec, common, common.get("ssl_ca_certs"))
    mod: Any = redis.asyncio.sentinel if aio else redis.sentinel
    manager = mod.Sentinel(list(spec.hosts), sentinel_kwargs=skw)
    client_cls = redis.asyncio.Redis if aio else redis.Redis
    return manager.master_for(spec.service, redis_class=client_cls, **_data_kwargs(spec, common))


def sentinel_kwargs(
    spec: MultiHostUrl, common: dict[str, Any], ssl_ca_certs: str | None
) -> dict[str, Any]:
    """Connection settings for the sentinels themselves (not the data nodes)."""
    kwargs: dict[str, Any] = {
        "socket_timeout": common["socket_timeout"],
        "socket_connect_timeout": common["socket_connect_timeout"],
    }
    if spec.sentinel_username:
        kwargs["username"] = spec.sentinel_username
    if spec.sentinel_password:
        kwargs["password"] = spec.sentinel_password
    if spec.sentinel_tls:
        kwargs["ssl"] = True
        if spec.ssl_ca_certs or ssl_ca_certs:
            kwargs["ssl_ca_certs"] = spec.ssl_ca_certs or ssl_ca_certs
    return kwargs


def _data_kwargs(spec: MultiHostUrl, common: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in common.items() if k != "timeout"}  # no blocking pool here
    kwargs["db"] = spec.db
    if spec.username:
        kwargs["username"] = spec.username
    if spec.password:
        kwargs["password"] = spec.password
    if spec.tls:
        kwargs["ssl"] = True
        if spec.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = spec.ssl_ca_certs
    else:
        kwargs.pop("ssl_ca_certs", None)
    return kwargs


__all__ = [
    "CLIENT_QUIRKS",
    "MultiHostUrl",
    "RedisUrlError",
    "Topology",
    "aping",
    "as_cluster_error",
    "ascan_primaries",
    "check_redis_url",
    "key_slot",
    "make_client",
    "make_cluster_client",
    "make_sentinel_client",
    "next_cursor",
    "no_pipeline",
    "parse_multi_host",
    "scan_primaries",
    "sentinel_kwargs",
    "server_address",
    "slot_groups",
    "split_cursor",
    "topology_of",
]
