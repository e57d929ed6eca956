"""The event recorder: per-thread counter rows, summed on read, retired when threads end."""

from __future__ import annotations

import gc
import threading
import weakref

from hiercache import stats as S
from hiercache.stats import CacheStats


def test_counts_from_many_short_lived_threads_are_exact_and_rows_are_retired() -> None:
    stats = CacheStats()
    stats.add(S.COALESCED)  # this thread's row
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(1000):
            stats.add(S.COALESCED)
            stats.row.c[S.L1_HIT_GET] += 1

    for _ in range(25):  # 200 threads, 8 at a time: a thread-per-request server
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    snap = stats.snapshot()
    assert snap[S.COALESCED] == 200 * 1000 + 1
    assert snap[S.L1_HIT_GET] == 200 * 1000
    assert stats.live_rows == 1  # finished threads' rows were folded into the retired row


def test_a_dropped_recorder_is_collected() -> None:
    stats = CacheStats()
    thread = threading.Thread(target=stats.add, args=(S.PROMOTION,))
    thread.start()
    thread.join()
    stats.add(S.PROMOTION)
    assert stats.total("promotions") == 2
    ref = weakref.ref(stats)
    del stats
    gc.collect()
    assert ref() is None
