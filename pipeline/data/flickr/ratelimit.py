"""Politeness: one global pacing limiter spaces every HTTP call (retries included) by
3600 / max_calls_per_hour seconds across all worker threads (Flickr allows 3,600 calls per hour
per key; the default stays under it), and retries wait an exponential backoff with jitter.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Global pacing: call starts are at least 3600 / max_calls_per_hour seconds apart.

    Thread-safe; each caller reserves the next slot under a lock and sleeps outside it, so N
    calls take at least (N - 1) intervals whatever the number of threads.
    """

    def __init__(self, max_calls_per_hour: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 3600.0 / max_calls_per_hour
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


def backoff_delay(retry: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (1-based): base * 2**(retry-1), capped, with
    jitter in [50 %, 100 %] so that workers that failed together do not retry together."""
    ceiling = min(max_s, base_s * 2 ** (retry - 1))
    return ceiling * (0.5 + 0.5 * rng.random())
