"""``config``, ``doctor``, ``ping``, ``get``, ``delete`` and ``invalidate``: the configured
cache, from the environment (``CACHE_*`` and ``.env``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from hiercache.cli import redis_commands as ops
from hiercache.cli.common import config_or_exit, fail
from hiercache.cli.doctor import diagnose
from hiercache.cli.settings_view import rows
from hiercache.core import MISS
from hiercache.errors import CacheError
from hiercache.settings import CacheConfig

T = TypeVar("T")

__all__ = [
    "config_command",
    "delete_command",
    "doctor_command",
    "get_command",
    "invalidate_command",
    "ping_command",
]

YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation. [default: off]")
MARKS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": "-"}


def config_command(
    changed: bool = typer.Option(
        False, "--changed", help="Show only settings set in the environment. [default: off]"
    ),
) -> None:
    """The settings resolved from the environment and .env, secrets masked. Invalid
    settings are listed one per line, and the exit code is 2."""
    config = config_or_exit("config")
    table = Table(title=f"hiercache settings (L2: {config.redis_target})", title_justify="left")
    for column in ("setting", "environment variable", "value", "from"):
        table.add_column(column)
    for row in rows(config):
        if changed and row.source != "environment":
            continue
        table.add_row(row.name, row.env, row.value, row.source)
    Console(highlight=False, width=max(100, Console().width)).print(table)


def doctor_command() -> None:
    """Check the settings, Redis (connectivity, version, round trip, mode, TLS), the
    backplane and the OpenTelemetry set-up, and say what to fix. Exit 1 on a failure."""
    config = config_or_exit("doctor")
    checks = diagnose(config)
    table = Table(title="hiercache doctor", title_justify="left")
    for column in ("", "check", "finding"):
        table.add_column(column)
    for check in checks:
        table.add_row(MARKS[check.status], check.name, check.detail)
    console = Console(highlight=False, width=max(100, Console().width))
    console.print(table)
    fixes = [c for c in checks if c.fix]
    if fixes:
        console.print("What to fix:")
        for i, check in enumerate(fixes, 1):
            console.print(f"  {i}. {check.name}: {check.fix}", soft_wrap=True)
    else:
        console.print("Nothing to fix.")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def _on_cache(command: str, config: CacheConfig, action: Callable[[Any], T]) -> T:
    """``action`` on the cache of ``config`` (closed after); a failure is one line on
    stderr: exit 2 for bad input (a bad key or pattern), 1 otherwise."""
    try:
        with ops.open_cache(config) as cache:
            return action(cache)
    except ops.CommandError as exc:
        fail(command, str(exc))
    except CacheError as exc:
        fail(command, str(exc), 2 if isinstance(exc, ValueError) else 1)


def ping_command(
    count: int = typer.Option(3, min=1, max=1000, help="Round trips to time."),
) -> None:
    """PING the configured Redis through the cache's own client; print the round trip."""
    config = config_or_exit("ping")
    times = _on_cache("ping", config, lambda cache: ops.ping(cache, count))
    print(
        f"PONG from {config.redis_target}: median {ops.median_ms(times):.3f} ms "
        f"over {count} round trips"
    )


def get_command(
    key: str = typer.Argument(..., help="The cache key (without the key prefix)."),
) -> None:
    """Print the value cached at KEY (L1, then L2) as JSON. Exit 1 on a miss."""
    config = config_or_exit("get")
    value = _on_cache("get", config, lambda cache: ops.get(cache, key))
    if value is MISS:
        fail("get", f"{key!r} is not cached (a miss in L1 and L2)")
    print(ops.dumps(value))


def _confirm(question: str, yes: bool) -> None:
    if not yes and not typer.confirm(question, default=False, err=True):
        print("hiercache: not confirmed, nothing changed", file=sys.stderr)
        raise typer.Exit(1)


def delete_command(
    key: str = typer.Argument(..., help="The cache key (without the key prefix)."), yes: bool = YES
) -> None:
    """Delete KEY from L1 and L2. Asks first, unless --yes."""
    config = config_or_exit("delete")
    _confirm(f"Delete {key!r} from {config.redis_target}?", yes)
    deleted = _on_cache("delete", config, lambda cache: ops.delete(cache, key))
    print(f"{key}: {'deleted' if deleted else 'not found'}")


def invalidate_command(
    pattern: str = typer.Argument(
        ..., help="A Redis glob over cache keys (without the key prefix), e.g. 'user:*'."
    ),
    yes: bool = YES,
) -> None:
    """Delete every key matching PATTERN from L1 and L2 (SCAN + UNLINK). Asks first,
    unless --yes."""
    config = config_or_exit("invalidate")
    _confirm(f"Delete every key matching {pattern!r} from {config.redis_target}?", yes)
    removed = _on_cache("invalidate", config, lambda cache: ops.invalidate(cache, pattern))
    print(f"{removed} keys matching {pattern!r} removed")
