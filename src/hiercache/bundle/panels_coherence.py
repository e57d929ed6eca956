"""The dashboard rows for loader resilience and L1 coherence, as plain data.

"Stale serving and locks": stale values served (stale-if-error, soft and hard load timeouts,
stale-while-revalidate), background refreshes and the cross-process stampede lock.
"Backplane": the invalidation link between instances, its messages, resyncs and lag.
``dashboard.py`` appends these rows after those of ``panels.py``.
"""

from __future__ import annotations

from hiercache.bundle.config import BundleConfig
from hiercache.bundle.panels import Panel, Queries, Query
from hiercache.bundle.promql import LEVEL, NAME, OPERATION, RESULT, STALE_REASON, TIMEOUT

__all__ = ["coherence_rows"]

#: The backplane's receive lag in the latency histogram.
BACKPLANE_LAG = f'{LEVEL}="backplane", {OPERATION}="receive"'


def coherence_rows(config: BundleConfig) -> list[tuple[str, list[Panel]]]:
    """The rows "Stale serving and locks" and "Backplane", each with its panels."""
    q = Queries(config)
    per = f"{{{{instance}}}} {{{{{NAME}}}}}"
    lag = q.rate("latency", BACKPLANE_LAG, part="bucket")

    def lag_quantile(value: str, label: str) -> Query:
        return Query(f"histogram_quantile({value}, sum by (le) ({lag}))", label)

    return [
        ("Stale serving and locks", [
            Panel(
                "timeseries",
                "Stale values served by reason",
                "Expired values returned inside their stale window per second, by reason: "
                "error (the loader raised: stale-if-error), timeout (a soft or hard load "
                "timeout passed) and revalidate (stale-while-revalidate while a background "
                "refresh runs). Each one is an old value served instead of an error or a wait. "
                "Zero while loaders are healthy and values are fresh.",
                "ops",
                (Query(f"sum by ({STALE_REASON}) ({q.rate('stale_served')})",
                       f"{{{{{STALE_REASON}}}}}"),),
                stacked=True,
            ),
            Panel(
                "timeseries",
                "Load timeouts and background refreshes",
                "Callers per second that stopped waiting for a load at its soft or hard "
                "timeout (load_soft_timeout_seconds, load_timeout_seconds), and background "
                "refreshes of values served stale-while-revalidate, by result. Refresh errors "
                "mean the backend still fails while its old values are served.",
                "ops",
                (
                    Query(f"sum by ({TIMEOUT}) ({q.rate('load_timeouts')})",
                          f"{{{{{TIMEOUT}}}}} timeout"),
                    Query(f"sum by ({RESULT}) ({q.rate('refreshes')})",
                          f"refresh {{{{{RESULT}}}}}"),
                ),
            ),
            Panel(
                "timeseries",
                "Lock waits",
                "Loads per second that waited for another process holding the stampede lock "
                "(lock=True or distributed_lock), and waits that ran out after "
                "lock_timeout_seconds and loaded anyway (the holder died or is slow).",
                "ops",
                (
                    Query(f"sum({q.rate('lock.waits')})", "lock waits"),
                    Query(f"sum({q.rate('lock.timeouts')})", "lock timeouts"),
                ),
            ),
        ]),
        ("Backplane", [
            Panel(
                "stat",
                "Backplane link",
                "Whether each instance's cache is subscribed to the invalidation backplane "
                "(1, up) or has lost its subscription (0, down: other instances' writes and "
                "invalidations are missed, and L1 entries are served at most "
                "backplane_max_staleness_seconds).",
                "none",
                (Query(f"min by (instance, {NAME}) ({q.sel('backplane.up')})", per),),
                thresholds=((None, "red"), (1, "green")),
                value_texts=(("0", ("down", "red")), ("1", ("up", "green"))),
            ),
            Panel(
                "timeseries",
                "Backplane messages per second",
                "Invalidation messages published by these instances (after their Redis writes "
                "land) and received from other instances (applied to L1).",
                "ops",
                (
                    Query(f"sum({q.rate('backplane.published')})", "published"),
                    Query(f"sum({q.rate('backplane.received')})", "received"),
                ),
            ),
            Panel(
                "timeseries",
                "Backplane resyncs",
                "Times per second L1 was dropped after the backplane link came back (messages "
                "may have been missed while it was down). Zero while the link holds.",
                "ops",
                (Query(f"sum({q.rate('backplane.resyncs')})", "resyncs"),),
            ),
            Panel(
                "timeseries",
                "Backplane receive lag",
                "Time from an instance publishing an invalidation to another applying it "
                "(p50, p99), from the latency histogram (cache_level backplane, operation "
                "receive). Includes clock skew between hosts.",
                "s",
                (lag_quantile("0.5", "p50"), lag_quantile("0.99", "p99")),
                log_scale=True,
            ),
        ]),
    ]  # fmt: skip
