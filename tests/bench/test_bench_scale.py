"""`mango bench neighbours` and `mango bench lemmatise` on tiny sizes: they run, check exactness, print tables."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.bench import runs
from pipeline.bench.runs import TagData, _terms_frame
from pipeline.errors import MangoError
from pipeline.neighbours.jaccard import search_neighbours

from stages.cli import app


def test_bench_neighbours_small():
    result = CliRunner().invoke(app, ["bench", "neighbours", "--n", "1500", "--k", "15", "--check", "40", "--blocked-pilot",
                                      "600", "--blocked-budget", "1", "--sklearn-n", "150", "--no-pipeline"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "| inverted index (`jaccard_topk`, default) | 1,500 |" in out
    assert "Exactness: 40 of 40 sampled queries identical to brute force" in out and "all equal" in out
    assert "blocked sparse product" in out and ("measured, both splits" in out or "extrapolated" in out)
    assert "| `mango neighbours IN OUT` (the whole command) | 1,500 |" in out
    assert "the whole command's rows for them identical too" in out  # read back from its Parquet output
    # the command wrote as many neighbour rows as search_neighbours finds on the same generated collection
    X, split = TagData(n=1500).build()
    assert f"({search_neighbours(_terms_frame(X, split), 15).height:,} rows)" in out


def test_whole_command_rows_read_back_as_brute_force_pads_them():
    """The command's output, read back for sampled images, in brute_force_topk's layout (-1 / nan
    padding), equals brute force; and the child's own rusage is reported."""
    from pipeline.neighbours.common import brute_force_topk

    data = TagData(n=300, vocab=40, tags_per_image=2.0, seed=3)
    X, split = data.build()
    sample = np.array([0, 7, 150, 299])
    out = runs.command_contender(vars(data), 5, sample=sample)
    ref_idx, ref_score = brute_force_topk(X, 5, queries=sample, candidates=lambda i: np.flatnonzero(split == split[i]))
    assert np.array_equal(out["sample_idx"], ref_idx) and np.array_equal(out["sample_score"], ref_score, equal_nan=True)
    assert out["cpu_seconds"] > 0 and out["rss_peak_mb"] > 10 and out["n"] == 300


@pytest.mark.parametrize("script, message", [
    ("echo 'bad row 3' >&2; exit 3", "exited with 3: bad row 3"),
    ("kill -9 $$", "killed by signal 9 (SIGKILL; out of memory?): no output"),
    ("kill -11 $$", "killed by signal 11 (SIGSEGV): no output"),  # no out-of-memory hint for a crash
    ("sleep 30", "killed after the 1 s timeout"),
    ("exit 0", "exited with 0 but wrote no neighbours.parquet: no output"),
    ("printf 'bad \\377 byte\\n'; exit 1", "exited with 1: bad \ufffd byte"),  # undecodable output shown, not raised
])
def test_whole_command_failures_say_how(monkeypatch, script, message):
    monkeypatch.setattr(runs, "mango_executable", lambda: ["sh", "-c", script, "sh"])
    with pytest.raises(MangoError, match=re.escape(message)):
        runs.command_contender(vars(TagData(n=50)), 3, timeout_s=1.0)


def test_whole_command_timeout_kills_its_process_group(monkeypatch, tmp_path):
    """A wrapper's children go with it: the grandchild `sleep` is killed too, not left running."""
    import os
    import time
    from pathlib import Path

    pid_file = tmp_path / "grandchild.pid"
    monkeypatch.setattr(runs, "mango_executable", lambda: ["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait", "sh"])
    with pytest.raises(MangoError, match="killed after the 1 s timeout"):
        runs.command_contender(vars(TagData(n=50)), 3, timeout_s=1.0)
    pid = int(pid_file.read_text())
    for _ in range(100):  # SIGKILL takes a moment; an unreaped orphan (a zombie, state Z) counts as gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"grandchild {pid} still running after the timeout")


def test_whole_command_interrupted_leaves_no_child(monkeypatch):
    """Ctrl-C while the command runs: the child is killed and reaped before the error goes up."""
    import os

    started = {}

    def interrupted(pid, timeout_s):
        started["pid"] = pid
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "mango_executable", lambda: ["sleep", "30"])
    monkeypatch.setattr(runs, "_wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.command_contender(vars(TagData(n=50)), 3)
    with pytest.raises(ProcessLookupError):  # killed and reaped: no such process any more
        os.kill(started["pid"], 0)


def test_bench_lemmatise_small():
    result = CliRunner().invoke(app, ["bench", "lemmatise", "--n", "500", "--tail", "200", "--vocab-size", "50",
                                      "--old-tokeniser-items", "300"])
    assert result.exit_code == 0, result.output
    assert "| `lemmatise` (tokenise, lemmatise, stop words, vocabulary, joins) |" in result.output
    assert "NLTK `RegexpTokenizer` per row (before)" in result.output
