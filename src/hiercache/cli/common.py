"""What the commands share: option checks that turn bad input into usage errors, and
one-line failures."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer

from hiercache.cli.metrics_source import check_url
from hiercache.cli.settings_view import ConfigError, load_config
from hiercache.settings import CacheConfig
from hiercache.telemetry.catalogue import check_prefix

__all__ = ["config_or_exit", "fail", "prefix_option", "url_argument"]


def fail(command: str, message: str, code: int = 1) -> NoReturn:
    """Print ``hiercache COMMAND: error: MESSAGE`` on stderr and exit with ``code``."""
    print(f"hiercache {command}: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def check_prefix_option(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_prefix(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def check_url_argument(value: str) -> str:
    try:
        return check_url(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def prefix_option(default: str | None = "hiercache", text: str = "") -> Any:
    return typer.Option(
        default,
        "--prefix",
        help=text or "Metric prefix of the service, its CACHE_METRICS_PREFIX.",
        callback=check_prefix_option,
    )


def url_argument() -> Any:
    return typer.Argument(
        ...,
        help="A /metrics endpoint (http://host:9464/metrics) or a Prometheus server "
        "(http://host:9090).",
        callback=check_url_argument,
        show_default=False,
    )


def config_or_exit(command: str) -> CacheConfig:
    """The settings from the environment; invalid ones print one line each and exit 2."""
    try:
        return load_config()
    except ConfigError as exc:
        for line in exc.lines:
            print(f"hiercache {command}: error: invalid setting {line}", file=sys.stderr)
        raise typer.Exit(2) from None
