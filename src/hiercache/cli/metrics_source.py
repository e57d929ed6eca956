"""Samples of a running system's hiercache metrics, from a ``/metrics`` endpoint (the
Prometheus text format) or from a Prometheus server's HTTP API."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Sample", "SourceError", "is_metrics_endpoint", "read_samples"]


class SourceError(Exception):
    """The URL could not be read; the message is one line saying why."""


@dataclass(frozen=True)
class Sample:
    """One series' value: ``name`` is the Prometheus series name (``hiercache_hits_total``)."""

    name: str
    labels: Mapping[str, str]
    value: float


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else ``ValueError`` naming it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"URL {url!r}: give http(s)://HOST:PORT/metrics (an endpoint) "
            "or http(s)://HOST:PORT (a Prometheus server)"
        )
    return url


def is_metrics_endpoint(url: str) -> bool:
    """A URL whose path ends in ``/metrics`` is scraped; any other is a Prometheus server."""
    return urllib.parse.urlsplit(url).path.rstrip("/").endswith("/metrics")


def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise SourceError(f"cannot read {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"cannot read {url}: {reason}") from None


def _scrape(url: str, prefix: str, timeout: float) -> list[Sample]:
    from prometheus_client.parser import text_string_to_metric_families

    text = _get(url, timeout).decode("utf-8", "replace")
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise SourceError(f"{url} is not in the Prometheus text format: {exc}") from None
    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for family in families
        for s in family.samples
        if s.name.startswith(f"{prefix}_")
    ]


def _query(url: str, prefix: str, timeout: float) -> list[Sample]:
    base = url.rstrip("/")
    query = urllib.parse.urlencode({"query": f'{{__name__=~"{prefix}_.+"}}'})
    body = _get(f"{base}/api/v1/query?{query}", timeout)
    try:
        answer = json.loads(body)
        result = answer["data"]["result"]
    except (ValueError, KeyError, TypeError):
        raise SourceError(f"{url} did not answer as a Prometheus API") from None
    samples = []
    for series in result:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        samples.append(Sample(name, labels, float(series["value"][1])))
    return samples


def read_samples(url: str, prefix: str, timeout: float = 5.0) -> list[Sample]:
    """Every ``{prefix}_*`` sample at ``url``; ``SourceError`` if it cannot be read."""
    if is_metrics_endpoint(url):
        return _scrape(url, prefix, timeout)
    return _query(url, prefix, timeout)
