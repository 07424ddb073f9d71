"""`mango bench neighbours` and `mango bench lemmatise` on tiny sizes: they run, check exactness, print tables."""

from __future__ import annotations

from typer.testing import CliRunner

from pipeline.bench.runs import TagData, _terms_frame
from pipeline.neighbours.jaccard import search_neighbours

from stages.cli import app


def test_bench_neighbours_small():
    result = CliRunner().invoke(app, ["bench", "neighbours", "--n", "1500", "--check", "40", "--blocked-pilot", "600",
                                      "--blocked-budget", "1", "--sklearn-n", "150", "--no-pipeline"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "| inverted index (`jaccard_topk`, default) | 1,500 |" in out
    assert "Exactness: 40 of 40 sampled queries identical to brute force" in out and "all equal" in out
    assert "blocked sparse product" in out and ("measured, both splits" in out or "extrapolated" in out)
    assert "| `mango neighbours IN OUT` (the whole command) | 1,500 |" in out
    # the command wrote as many neighbour rows as search_neighbours finds on the same generated collection
    X, split = TagData(n=1500).build()
    assert f"({search_neighbours(_terms_frame(X, split), 15).height:,} rows)" in out


def test_bench_lemmatise_small():
    result = CliRunner().invoke(app, ["bench", "lemmatise", "--n", "500", "--tail", "200", "--vocab-size", "50",
                                      "--old-tokeniser-items", "300"])
    assert result.exit_code == 0, result.output
    assert "| `lemmatise` (tokenise, lemmatise, stop words, vocabulary, joins) |" in result.output
    assert "NLTK `RegexpTokenizer` per row (before)" in result.output
