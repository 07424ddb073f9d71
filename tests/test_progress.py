"""Progress in logs: plain periodic lines with count, rate and ETA when stderr is not a terminal."""

from __future__ import annotations

import logging

from pipeline import progress as prog


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(prog, "is_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="mango")
    bar = prog.progress(range(4), desc="work", unit="batch")
    assert isinstance(bar, prog.LineProgress)
    bar.interval = 0.0  # a line per step
    seen = list(bar)
    assert seen == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("work: 1/4 batch (25%), ") and "ETA" in lines[0]
    assert lines[3].startswith("work: 4/4 batch (100%)")
    assert all("\r" not in line for line in lines)


def test_postfix_update_leave_and_disable(caplog):
    caplog.set_level(logging.INFO, logger="mango")
    bar = prog.LineProgress(total=10, desc="crawl", unit="photo", initial=2, interval=0.0)
    bar.set_postfix(ok=3, error=0, refresh=False)
    bar.update(1)
    assert caplog.records[-1].getMessage().startswith("crawl: 3/10 photo (30%)")
    assert caplog.records[-1].getMessage().endswith("ok=3, error=0")
    bar.close()
    bar.close()  # idempotent
    n = len(caplog.records)
    quiet = prog.LineProgress(range(3), desc="epoch", leave=False, interval=1e9)
    list(quiet)
    off = prog.LineProgress(range(3), desc="off", disable=True, interval=0.0)
    list(off)
    assert len(caplog.records) == n  # no last line for leave=False, nothing when disabled


def test_durations_read_well():
    assert prog._duration(42) == "42 s"
    assert prog._duration(125) == "2 min 05 s"
    assert prog._duration(7260) == "2 h 01 min"
    assert prog._duration(float("inf")) == "?"
