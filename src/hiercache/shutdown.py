"""Clean shutdown for plain processes: flush write-behind writes on SIGTERM (opt-in).

``docker stop`` and Kubernetes send SIGTERM, then SIGKILL after a grace period (10 s and
30 s by default). ``install_sigterm_flush(cache)`` makes SIGTERM first send what the
write-behind queue holds (waiting at most ``write_behind_drain_seconds``, or ``timeout``;
what is left is counted, reason ``shutdown``, and logged once), close the cache's
connections, and then do what SIGTERM did before: call the handler that was installed,
ignore it if it was ignored, or end the process as the default action does (killed by
SIGTERM: exit status 128 + 15 in a shell).

The handler runs on the main thread, between two Python bytecodes of whatever that thread
was doing. Keep the drain bound below the orchestrator's grace period.
ASGI servers handle SIGTERM themselves: use ``hiercache.contrib.starlette`` there.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from hiercache.manager import HierarchicalCacheManager

log = logging.getLogger("hiercache")

__all__ = ["drain", "install_sigterm_flush"]


def drain(cache: HierarchicalCacheManager, timeout: float | None = None) -> int:
    """Send queued writes (waiting at most ``timeout``, default the cache's
    ``write_behind_drain_seconds``), then close the cache's sync connections. Returns how
    many writes were left unsent (dropped, reason ``shutdown``)."""
    left = cache.write_behind.close(timeout) if cache.write_behind is not None else 0
    cache.sync.close()
    return left


def install_sigterm_flush(
    cache: HierarchicalCacheManager, timeout: float | None = None
) -> Callable[[], None]:
    """Drain ``cache`` on SIGTERM, then chain the SIGTERM handler installed before (see the
    module docstring). Returns a function that puts the previous handler back."""
    previous: Any = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        left = drain(cache, timeout)
        log.info("hiercache: SIGTERM: write-behind drained (%d writes left unsent)", left)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL, or a handler not set from Python: end as SIGTERM would have
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)

    def uninstall() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    return uninstall
