"""L1 coherence for one cache: what it publishes on the backplane and what it does with
what it receives (see ``backplane``).

- Received keys, patterns and clears drop the matching L1 entries (and stale copies), and
  supersede loads of those keys under way, as a local delete would.
- No resurrection: an L2 read that started before an invalidation of its key is not
  promoted into L1 (``invalidated_since``), so a slow read cannot put back an old value.
- Lost link: while the subscription is down, L1 keeps serving (a Redis outage must not
  empty it), but after ``backplane_max_staleness_seconds`` down, L1 is dropped once, so no
  entry read before the drop is served longer than that; when the link is back, L1 is
  dropped once more (a resync: whatever was missed meanwhile can no longer be served).
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from hiercache import stats as S
from hiercache.backplane import Subscriber, channel_of, encode_message
from hiercache.memory import EvictionReason
from hiercache.redis_glob import compile_glob

if TYPE_CHECKING:
    from hiercache.core import CacheCore

log = logging.getLogger("hiercache")

#: Remembered recent invalidations (for no-resurrection checks), by key and by pattern.
RECENT_KEYS: Final = 10_000
RECENT_PATTERNS: Final = 64
#: Every cache's coherence, so a forked child can subscribe on its own (``_after_fork``).
_ALL: weakref.WeakSet[Coherence] = weakref.WeakSet()


def _everything(key: str) -> bool:
    return True


class Coherence:
    def __init__(self, core: CacheCore, max_staleness: float) -> None:
        self.core = core
        self.origin = secrets.token_hex(8)
        self.channel = channel_of(core.config.key_prefix)
        self.max_staleness = max_staleness
        self._seq = itertools.count(1)
        self._epoch = 0
        self._recent_keys: OrderedDict[str, int] = OrderedDict()
        self._recent_patterns: deque[tuple[int, Callable[[str], bool]]] = deque(
            maxlen=RECENT_PATTERNS
        )
        self._lock = threading.Lock()
        self._down_timer: threading.Timer | None = None
        self.subscriber: Subscriber | None = None
        _ALL.add(self)

    # -- subscription ----------------------------------------------------------------------
    def start(self) -> None:
        l2 = self.core.l2
        if self.subscriber is None and l2 is not None:
            target = self.core.config.redis_target
            self.subscriber = Subscriber.for_client(target, l2.pubsub_client)
            self.subscriber.add(self.channel, self)

    def _after_fork(self) -> None:
        """In a forked child (``gunicorn --preload``): a new origin (siblings forked from
        one parent must not take each other's messages for their own), and, as the parent's
        subscriber thread does not exist here, a subscription of the child's own."""
        self.origin = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._down_timer = None
        if self.subscriber is not None:
            self.subscriber = None
            self.start()

    def stop(self) -> None:
        if self.subscriber is not None:
            self.subscriber.remove(self.channel, self)
            self.subscriber = None
        self._cancel_timer()

    @property
    def up(self) -> bool:
        return self.subscriber is not None and self.subscriber.up

    # -- publishing ------------------------------------------------------------------------
    def message(self, keys: list[str] | None = None, pattern: str | None = None) -> bytes:
        self.core.stats.add(S.BACKPLANE_PUBLISHED)
        return encode_message(self.origin, next(self._seq), keys, pattern)

    def announce(self, op: Any, keys: list[str]) -> Any:
        """``op`` (a write or delete of ``keys``) with its message in the same pipeline."""
        l2 = self.core.l2
        if l2 is None or not keys:
            return op
        return l2.with_publish(op, self.channel, self.message(keys))

    def announce_pattern(self, pattern: str) -> Any:
        """The PUBLISH of an invalidation by ``pattern``, sent once its keys are gone."""
        l2 = self.core.l2
        return None if l2 is None else l2.op_publish(self.channel, self.message(pattern=pattern))

    # -- receiving (the subscriber's thread) -------------------------------------------------
    def received(self, message: dict[str, Any]) -> None:
        if message.get("o") == self.origin:
            return
        core = self.core
        core.stats.add(S.BACKPLANE_RECEIVED)
        sent = message.get("t")
        if isinstance(sent, (int, float)):
            core.telemetry.record_latency("backplane", "receive", max(0.0, time.time() - sent))
        keys, pattern = message.get("k"), message.get("p")
        if isinstance(keys, list):
            for key in keys:
                if isinstance(key, str):
                    self.invalidated(key)
                    core.flight.supersede(key)
                    core.shelf.discard(key)
                    core.l1.delete(key, EvictionReason.INVALIDATED)
        if isinstance(pattern, str) and pattern:
            match = compile_glob(pattern).match
            self.invalidated_matching(match)
            core.flight.supersede_matching(match)
            core.shelf.discard_matching(match)
            core.l1.delete_matching(match)

    def link_down(self) -> None:
        log.warning(
            "hiercache: backplane subscription to %s lost (cache %r): L1 entries are served "
            "at most %gs more",
            self.core.config.redis_target,
            self.core.config.name,
            self.max_staleness,
        )
        self._cancel_timer()
        timer = threading.Timer(self.max_staleness, self._stale_too_long)
        timer.daemon = True
        self._down_timer = timer
        timer.start()

    def link_up(self) -> None:
        self._cancel_timer()
        self._drop_l1()
        log.warning(
            "hiercache: backplane subscription back (cache %r): L1 resynced",
            self.core.config.name,
        )

    def _stale_too_long(self) -> None:
        if not self.up:
            self._drop_l1()

    def _drop_l1(self) -> None:
        self.invalidated_matching(_everything)
        self.core.l1.delete_matching(_everything)
        self.core.stats.add(S.BACKPLANE_RESYNC)

    def _cancel_timer(self) -> None:
        timer, self._down_timer = self._down_timer, None
        if timer is not None:
            timer.cancel()

    # -- no resurrection ---------------------------------------------------------------------
    def epoch(self) -> int:
        """Read before an L2 read; pass to ``invalidated_since`` before promoting."""
        return self._epoch

    def invalidated(self, key: str) -> None:
        with self._lock:
            self._epoch += 1
            self._recent_keys[key] = self._epoch
            self._recent_keys.move_to_end(key)
            if len(self._recent_keys) > RECENT_KEYS:
                self._recent_keys.popitem(last=False)

    def invalidated_matching(self, match: Callable[[str], bool]) -> None:
        with self._lock:
            self._epoch += 1
            self._recent_patterns.append((self._epoch, match))

    def invalidated_since(self, key: str, epoch: int) -> bool:
        """Whether ``key`` may have been invalidated after ``epoch`` (when unsure: yes)."""
        if self._epoch == epoch:
            return False  # the common case: nothing at all since
        with self._lock:
            at = self._recent_keys.get(key)
            if at is not None and at > epoch:
                return True
            patterns = list(self._recent_patterns)
        if len(patterns) == RECENT_PATTERNS and patterns[0][0] > epoch:
            return True  # older pattern invalidations were forgotten: assume the worst
        oldest_key = next(iter(self._recent_keys.values()), epoch)
        if len(self._recent_keys) >= RECENT_KEYS and oldest_key > epoch:
            return True
        return any(at > epoch and match(key) for at, match in patterns)


def _after_fork_in_child() -> None:
    for coherence in list(_ALL):
        coherence._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
