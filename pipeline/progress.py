"""Progress that reads well on a terminal and in a log.

On a terminal (stderr is a TTY) `progress` is a tqdm bar that redraws in place. Otherwise (DVC's
stage logs, CI, `2> file`) tqdm's carriage-return redraws would pile up on one line, so it logs a
plain line every `interval` seconds and one at the end instead:

    [mango] insatten epoch 3/15: 31/62 batch (50%), 12.4 batch/s, ETA 2 s, loss=0.1402
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger("mango")

INTERVAL = float(os.environ.get("MANGO_PROGRESS_INTERVAL", "10"))  # seconds between plain lines


def is_terminal() -> bool:
    return sys.stderr.isatty()


def progress(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, unit: str = "it",
             disable: bool = False, leave: bool = True, initial: int = 0, **kwargs: Any):
    """tqdm on a terminal; plain periodic log lines otherwise (same calls: iterate, update, set_postfix, close)."""
    if is_terminal():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=leave, initial=initial, **kwargs)
    return LineProgress(iterable, desc=desc, total=total, unit=unit, disable=disable, initial=initial, leave=leave)


class LineProgress:
    """A tqdm stand-in for logs: one line per `interval` seconds with count, rate and ETA, and a last
    line (unless `leave` is False, as for a training epoch whose caller logs its own summary)."""

    def __init__(self, iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, unit: str = "it",
                 disable: bool = False, initial: int = 0, interval: float | None = None, leave: bool = True) -> None:
        self.iterable, self.desc, self.unit, self.disable, self.leave = iterable, desc, unit, disable, leave
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self.initial = total, initial, initial
        self.interval = INTERVAL if interval is None else interval
        self.postfix = ""
        self.start = self.last = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:  # type: ignore[union-attr]
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            log.info("%s", self.line(now))

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        done = self.n - self.initial
        rate = done / elapsed
        count = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        if self.total and rate > 0 and self.n < self.total:
            eta = f", ETA {_duration((self.total - self.n) / rate)}"
        else:
            eta = f", {_duration(elapsed)}" if self.total and self.n >= self.total else ""
        speed = f"{rate:.1f} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s/{self.unit}"
        return f"{self.desc}: {count}{pct}, {speed}{eta}" + (f", {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = time.perf_counter()
        # the last line only for work that took a while (short loops would flood the log)
        if not self.disable and self.leave and now - self.start >= min(self.interval, 2.0):
            log.info("%s", self.line(now))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
