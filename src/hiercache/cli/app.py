"""The ``hiercache`` command (Typer and Rich): the app, its options and error handling.

Usage errors are one line on stderr and exit 2, never a traceback. The commands live in
``observe`` (demo, stats, advise), ``operate`` (config, doctor, ping, get, delete,
invalidate) and ``tools`` (bundle, bench).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import typer

from hiercache.cli import observe, operate, tools

__all__ = ["app", "run"]

USAGE = 2  # the exit code of a usage error

HELP = (
    "hiercache: a two-tier (memory + Redis) cache. Run a demo workload, watch a running "
    "system's metrics, check its settings and Redis, and render the dashboards and rules."
)


def package_version() -> str:
    try:
        return version("hiercache")
    except PackageNotFoundError:  # pragma: no cover - run from a bare source tree
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hiercache {package_version()}")
        raise typer.Exit(0)


app = typer.Typer(
    name="hiercache",
    help=HELP,
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


@app.callback()
def root(
    show_version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit. [default: off]",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    """hiercache: a two-tier (memory + Redis) cache. Run a demo workload, watch a running
    system's metrics, check its settings and Redis, and render the dashboards and rules."""


for module, names in (
    (observe, ("demo", "stats", "advise")),
    (operate, ("config", "doctor", "ping", "get", "delete", "invalidate")),
    (tools, ("bundle", "bench")),
):
    for name in names:
        app.command(name)(getattr(module, f"{name}_command"))

COMMANDS = (
    "demo", "stats", "advise", "config", "doctor", "ping", "get", "delete", "invalidate",
    "bundle", "bench",
)  # fmt: skip


def _usage_line(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "hiercache"
    lines = exc.format_message().strip().splitlines()
    message = lines[0] if lines else "bad usage"
    if message.startswith("Missing command"):
        message = f"missing command: one of {', '.join(COMMANDS)}"
    return f"{path}: error: {message} (see {path} --help)"


def run(argv: Sequence[str]) -> int:
    """Run the app on ``argv``; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=list(argv), prog_name="hiercache", standalone_mode=False)
    except typer.TyperException as exc:  # Typer's (vendored Click's) usage errors
        if exc.exit_code == USAGE:
            print(_usage_line(exc), file=sys.stderr)
        else:
            print(f"hiercache: error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print("hiercache: aborted, nothing changed", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
