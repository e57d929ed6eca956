"""``hiercache doctor``: what the cache would find at start-up, and what to fix.

Checks: the settings, the L2 backend, connectivity and round-trip latency, the server's
version and mode, TLS and authentication, the backplane, and the OpenTelemetry
configuration in the environment (``OTEL_*`` variables, importable SDK and exporters).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from hiercache.settings import CacheConfig, L2Backend

__all__ = ["Check", "diagnose"]

Status = Literal["ok", "warn", "fail", "info"]

#: Importable OpenTelemetry parts: module -> what it gives.
OTEL_MODULES = {
    "opentelemetry.sdk": "the SDK (hiercache.telemetry.setup())",
    "opentelemetry.exporter.prometheus": "the Prometheus exporter (/metrics)",
    "opentelemetry.exporter.otlp.proto.http": "the OTLP/HTTP exporter",
    "opentelemetry.exporter.otlp.proto.grpc": "the OTLP/gRPC exporter",
    "opentelemetry.instrumentation.redis": "redis-py instrumentation",
}
#: OTEL_* variables whose values may hold credentials: shown masked.
SECRET_OTEL = ("HEADERS", "PASSWORD", "TOKEN", "KEY", "SECRET", "CERTIFICATE")


URL_SCHEMES = {
    "standalone": "redis://",
    "cluster": "redis+cluster://",
    "sentinel": "redis+sentinel://",
}


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str
    fix: str = ""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(config: CacheConfig) -> tuple[bool, str]:
    if config.redis_url is not None:
        parts = urlsplit(config.redis_url.get_secret_value())
        return parts.scheme.startswith("rediss"), parts.hostname or ""
    return config.redis_ssl, config.redis_host


def _has_password(config: CacheConfig) -> bool:
    if config.redis_url is not None:
        return urlsplit(config.redis_url.get_secret_value()).password is not None
    return config.redis_password is not None


def server_checks(config: CacheConfig, client: Any, pings: int = 5) -> list[Check]:
    """Connectivity, latency, version and mode, from a redis-py sync ``client``."""
    target = config.redis_target
    times = []
    try:
        for _ in range(pings):
            started = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - started)
        info = client.info("server")
        if info and all(isinstance(v, dict) for v in info.values()):
            info = next(iter(info.values()))  # a cluster client answers per node
    except Exception as exc:  # any redis-py failure is the finding, not a crash
        kind = type(exc).__name__
        return [
            Check(
                "fail",
                "connectivity",
                f"{target}: {kind}: {exc}",
                "start Redis or point CACHE_REDIS_URL at it; check the password and TLS",
            )
        ]
    checks = [
        Check("ok", "connectivity", f"{target}: PING answered"),
        Check(
            "ok",
            "round trip",
            f"median {statistics.median(times) * 1000:.3f} ms, "
            f"max {max(times) * 1000:.3f} ms over {pings} PINGs",
        ),
        Check("ok", "server version", f"Redis {info.get('redis_version', 'unknown')}"),
    ]
    server_mode = str(info.get("redis_mode", "standalone"))
    wanted = configured_mode(config)
    if server_mode == wanted == "standalone":
        checks.append(Check("ok", "mode", "standalone"))
    elif server_mode == wanted or (wanted == "sentinel" and server_mode == "standalone"):
        checks.append(Check("ok", "mode", f"{wanted} (the server reports {server_mode})"))
    else:
        checks.append(
            Check(
                "fail",
                "mode",
                f"the URL asks for {wanted} but the server runs in {server_mode} mode",
                f"make CACHE_REDIS_URL a {server_mode} URL ({URL_SCHEMES.get(server_mode, '?')})",
            )
        )
    return checks


def configured_mode(config: CacheConfig) -> str:
    """standalone, cluster or sentinel, from the URL's scheme (redis+cluster://...)."""
    if config.redis_url is None:
        return "standalone"
    scheme = urlsplit(config.redis_url.get_secret_value()).scheme
    for mode in ("cluster", "sentinel"):
        if scheme.endswith(f"+{mode}"):
            return mode
    return "standalone"


def security_checks(config: CacheConfig) -> list[Check]:
    tls, host = _tls(config)
    if tls:
        ca = config.redis_ssl_ca_certs or "the system store"
        checks = [Check("ok", "TLS", f"on, server certificate checked against {ca}")]
    elif _loopback(host):
        checks = [Check("info", "TLS", "off (loopback)")]
    else:
        checks = [
            Check(
                "warn",
                "TLS",
                f"off towards {host}: data and password travel in clear text",
                "use a rediss:// URL (CACHE_REDIS_URL) or CACHE_REDIS_SSL=true",
            )
        ]
    auth = "a password is set" if _has_password(config) else "no password"
    checks.append(Check("info", "authentication", auth))
    return checks


def backplane_check(config: CacheConfig) -> Check:
    fields = [n for n in CacheConfig.model_fields if "backplane" in n]
    if not fields:
        return Check(
            "info",
            "backplane",
            "not in this version: each instance's L1 is invalidated only by its own writes",
        )
    return Check("info", "backplane", ", ".join(f"{n}={getattr(config, n)!s}" for n in fields))


def otel_checks(environ: Mapping[str, str]) -> list[Check]:
    """The OpenTelemetry configuration found in ``environ`` and the importable parts."""
    found = {k: v for k, v in sorted(environ.items()) if k.startswith("OTEL_")}
    shown = ", ".join(
        f"{k}={'******' if any(s in k for s in SECRET_OTEL) else v}" for k, v in found.items()
    )
    checks = [Check("info", "OTEL_* variables", shown or "none set")]
    present = {m: _importable(m) for m in OTEL_MODULES}
    have = [OTEL_MODULES[m] for m, ok in present.items() if ok]
    checks.append(Check("info", "OpenTelemetry parts", "; ".join(have) or "API only"))
    if not present["opentelemetry.sdk"]:
        checks.append(
            Check(
                "warn",
                "telemetry SDK",
                "not installed: metrics and spans go to the no-op API unless your "
                "application installs an SDK",
                "pip install -e '.[telemetry]' and call hiercache.telemetry.setup()",
            )
        )
    endpoint = found.get("OTEL_EXPORTER_OTLP_ENDPOINT") or found.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if endpoint and not present["opentelemetry.exporter.otlp.proto.http"]:
        checks.append(
            Check(
                "warn",
                "OTLP exporter",
                f"an OTLP endpoint is set ({endpoint}) but no OTLP/HTTP exporter is installed",
                "pip install -e '.[telemetry]'",
            )
        )
    if "OTEL_SERVICE_NAME" not in found and "service.name" not in found.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        checks.append(
            Check(
                "info",
                "service name",
                "unset: setup() names the service 'hiercache'",
                "set OTEL_SERVICE_NAME to your service's name",
            )
        )
    return checks


def diagnose(config: CacheConfig, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in order. Builds the cache's own L2 client (so TLS, auth and URL
    parsing are the cache's); closes it before returning."""
    environ = os.environ if environ is None else environ
    checks: list[Check] = [Check("ok", "settings", "valid")]
    write = (
        "write-through"
        if config.write_through
        else ("write-behind" if config.write_behind else "L1 only writes")
    )
    checks.append(
        Check(
            "info",
            "cache",
            f"name {config.name}, key prefix {config.key_prefix!r}, {write}, "
            f"metrics prefix {config.metrics_prefix}",
        )
    )
    if config.l2_backend is L2Backend.REDIS:
        from hiercache.redis_tier import RedisCacheBackend

        backend = RedisCacheBackend(config)
        try:
            checks += server_checks(config, backend.sync_client())
        finally:
            backend.close()
        checks += security_checks(config)
    else:
        detail = {
            L2Backend.EMBEDDED: "embedded (in-process, for demos and tests)",
            L2Backend.NONE: "none: L1 only",
        }[config.l2_backend]
        checks.append(Check("warn", "L2", detail, "set CACHE_L2_BACKEND=redis and CACHE_REDIS_URL"))
    checks.append(backplane_check(config))
    checks += otel_checks(environ)
    return checks
