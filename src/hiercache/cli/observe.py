"""``demo``, ``stats`` and ``advise``: run a workload, and read a running system's metrics."""

from __future__ import annotations

import socket
import time
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hiercache import demo
from hiercache.cli import advise as advisor
from hiercache.cli.common import fail, prefix_option, url_argument
from hiercache.cli.metrics_source import Sample, SourceError, read_samples
from hiercache.cli.stats_view import render, snapshot
from hiercache.errors import MissingExtraError

__all__ = ["advise_command", "demo_command", "stats_command"]

D = demo.DemoOptions()
SERVE_PORT = 9464


def demo_command(
    requests: int = typer.Option(D.requests, min=1, help="Requests per round."),
    prompts: int = typer.Option(D.prompts, min=1, help="Distinct prompts."),
    zipf: float = typer.Option(
        D.zipf, min=0.0, help="Zipf exponent of prompt popularity (0: uniform)."
    ),
    backend_ms: float = typer.Option(
        D.backend_ms, min=0.0, help="Backend latency in milliseconds."
    ),
    concurrency: int = typer.Option(D.concurrency, min=1, help="Requests in flight."),
    l1_size: int = typer.Option(D.l1_size, min=1, help="L1 entries (small, so L2 matters)."),
    seed: int = typer.Option(D.seed, help="Random seed of the workload."),
    forever: bool = typer.Option(
        False, "--forever", help="Repeat rounds until stopped (Ctrl-C, SIGTERM). [default: off]"
    ),
    serve: bool = typer.Option(
        False,
        "--serve",
        help=f"Run continuously with a /metrics endpoint (on --metrics-port, else {SERVE_PORT}). "
        "[default: off]",
    ),
    metrics_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        help="Serve /metrics on this port (0: a free one). [default: none]",
        show_default=False,
    ),
    metrics_host: str = typer.Option(D.metrics_host, help="Address /metrics listens on."),
) -> None:
    """Replay an LLM-like workload through the cache and print, per tier, the share of
    requests, their latency and the speedup over the backend. Without CACHE_REDIS_URL it
    runs on an embedded L2 (the 'embedded' extra)."""
    options = demo.DemoOptions(
        requests, prompts, zipf, backend_ms, concurrency, l1_size, seed, forever or serve,
        SERVE_PORT if serve and metrics_port is None else metrics_port, metrics_host,
    )  # fmt: skip
    out = Console(highlight=False)
    if options.forever:
        hooks = demo.Hooks()
        _run_demo(options, hooks)
        return
    progress = Progress(
        TextColumn("requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip
    task = progress.add_task("requests", total=options.requests)

    def report(tally: demo.Tally, stats: dict[str, Any]) -> None:
        progress.stop()
        table = Table(box=box.SIMPLE_HEAD, title="hiercache demo", title_justify="left")
        for i, header in enumerate(demo.ROW_HEADER):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in demo.rows(tally):
            table.add_row(*row)
        out.print(table)
        for line in demo.summary(tally, stats, options.backend_ms):
            out.print(line, soft_wrap=True)

    with progress:
        _run_demo(options, demo.Hooks(on_request=lambda: progress.advance(task), on_report=report))


def _check_port(host: str, port: int) -> None:
    """A usage error now if ``host:port`` cannot be listened on, rather than a demo
    running without its /metrics endpoint."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        fail("demo", f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc} "
             "(choose another --metrics-port)", 2)  # fmt: skip


def _run_demo(options: demo.DemoOptions, hooks: demo.Hooks) -> None:
    if options.metrics_port:
        _check_port(options.metrics_host, options.metrics_port)
    try:
        demo.main(options, hooks)
    except MissingExtraError as exc:
        fail("demo", str(exc), 2)
    except OSError as exc:  # the metrics port is taken, or the host is not ours
        where = f"{options.metrics_host}:{options.metrics_port}"
        fail("demo", f"cannot serve /metrics on {where}: {exc.strerror or exc} "
             "(choose another --metrics-port)", 2)  # fmt: skip


def _samples(command: str, url: str, prefix: str, timeout: float) -> list[Sample]:
    try:
        return read_samples(url, prefix, timeout)
    except SourceError as exc:
        fail(command, str(exc))


def stats_command(
    url: str = url_argument(),
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit. [default: off]"),
    interval: float = typer.Option(
        2.0, min=0.1, help="Seconds between refreshes of the live view."
    ),
    prefix: str = prefix_option(),
    timeout: float = typer.Option(5.0, min=0.1, help="HTTP timeout in seconds."),
) -> None:
    """A live view of hit ratios, per-tier latency, evictions, L2 errors, L2 and breaker
    state and the backplane, read from a /metrics endpoint or a Prometheus server.
    Ctrl-C stops it."""
    console = Console(highlight=False)

    def view() -> Any:
        caches = snapshot(_samples("stats", url, prefix, timeout), prefix)
        if not caches:
            fail("stats", f"no {prefix}_* metrics at {url} (is --prefix right?)")
        return render(caches, url)

    if once:
        console.print(view())
        return
    try:
        with Live(view(), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)  # the refresh period the user asked for
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        return


def advise_command(
    url: str = url_argument(),
    prefix: str = prefix_option(),
    current: int | None = typer.Option(
        None,
        min=1,
        show_default=False,
        help="The L1 capacity now (CACHE_L1_MAX_SIZE). [default: the curve's middle point]",
    ),
    tolerance: float = typer.Option(
        0.01, min=0.0, max=1.0, help="Hit ratio worth giving up for a smaller L1 (0.01: 1 point)."
    ),
    timeout: float = typer.Option(5.0, min=0.1, help="HTTP timeout in seconds."),
) -> None:
    """The L1 size advisor: the estimated L1 hit ratio at other capacities, from the
    {prefix}_l1_hit_ratio_estimate gauges, and the size to choose."""
    found = advisor.curves(_samples("advise", url, prefix, timeout), prefix)
    if not found:
        fail(
            "advise",
            f"no {prefix}_{advisor.GAUGE} gauge at {url}: this hiercache does not export "
            "the size advisor yet, or --prefix is wrong",
        )
    console = Console(highlight=False)
    for cache, curve in found.items():
        advice = advisor.advise(cache, curve, current, tolerance)
        table = Table(title=f"cache {cache}: estimated L1 hit ratio", title_justify="left")
        table.add_column("L1 capacity", justify="right")
        table.add_column("hit ratio", justify="right")
        table.add_column("")
        for capacity, ratio in advice.curve:
            mark = " <- now" if capacity == advice.current else ""
            mark += " <- advised" if capacity == advice.recommended else ""
            table.add_row(str(capacity), f"{ratio:.1%}", "#" * round(ratio * 40) + mark)
        console.print(table)
        console.print(advice.text(), soft_wrap=True)
