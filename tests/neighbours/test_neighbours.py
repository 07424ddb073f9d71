"""Jaccard top-k neighbours: exact against a brute-force reference, edge cases, splits, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from pipeline.errors import MangoError
from pipeline.neighbours.jaccard import jaccard_topk, search_neighbours
from pipeline.neighbours.common import brute_force_topk
from tests.helpers import by_image as pairs, frame, to_csr
from pipeline.schemas import NEIGHBOURS_SCHEMA
from stages.cli import app

ROOT = Path(__file__).resolve().parents[2]


def brute_force(sets: list[set], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference (`brute_force_topk`) on Python sets."""
    return brute_force_topk(to_csr(sets), k)


def random_sets(seed: int, n: int, n_terms: int, max_size: int) -> list[set]:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_terms + 1)  # Zipf-like: a few common terms, many ties
    popularity /= popularity.sum()
    return [set(rng.choice(n_terms, size=rng.integers(0, max_size + 1), p=popularity).tolist()) for _ in range(n)]


# --- jaccard_topk: exact against brute force -------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_small_sets_many_ties(seed):
    sets = random_sets(seed, n=300, n_terms=40, max_size=8)
    idx, score = jaccard_topk(to_csr(sets, 40), k=10, block_size=7)
    ref_idx, ref_score = brute_force(sets, 10)
    assert idx.dtype == np.int64 and score.dtype == np.float64
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(score, ref_score)  # bit-identical, nan where padded
    assert (ref_idx == -1).any() and (ref_idx[:, -1] >= 0).any()  # the data covers both cases


@pytest.mark.parametrize("seed", range(2))
def test_matches_brute_force_large_sets_close_scores(seed):
    # Sets of up to 60 of 90 terms: distinct scores closer than the coarse pre-selection's buckets.
    sets = random_sets(100 + seed, n=150, n_terms=90, max_size=60)
    for block_size in (1, 13, 1000):
        idx, score = jaccard_topk(to_csr(sets, 90), k=15, block_size=block_size)
        ref_idx, ref_score = brute_force(sets, 15)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(score, ref_score)


def test_binary_semantics_and_k_beyond_n():
    # Counts above 1 and explicit duplicates mean membership; k larger than n pads every row.
    X = sp.csr_matrix((np.array([3.0, 1.0, 1.0, 2.0, 5.0]), (np.array([0, 0, 0, 1, 2]), np.array([0, 1, 1, 1, 2]))), shape=(3, 3))
    idx, score = jaccard_topk(X, k=5, block_size=2)
    np.testing.assert_array_equal(idx, [[1, -1, -1, -1, -1], [0, -1, -1, -1, -1], [-1] * 5])
    np.testing.assert_array_equal(score[:, 0], [0.5, 0.5, np.nan])
    assert np.isnan(score[:, 1:]).all()


@pytest.mark.parametrize("k, block_size", [(0, 10), (3, 0)])
def test_bad_arguments(k, block_size):
    with pytest.raises(MangoError, match="must be >= 1"):
        jaccard_topk(to_csr([{0}, {0}], 1), k=k, block_size=block_size)


# --- hand-built cases -------------------------------------------------------------------------

def test_self_never_and_identical_sets_are_mutual_neighbours():
    sets = [{0, 1}, {2}, {0, 1}, {0}]
    idx, score = jaccard_topk(to_csr(sets, 3), k=3, block_size=2)
    assert not (idx == np.arange(4)[:, None]).any()
    assert (idx[0, 0], score[0, 0]) == (2, 1.0)
    assert (idx[2, 0], score[2, 0]) == (0, 1.0)
    assert idx[1].tolist() == [-1, -1, -1]  # {2} shares nothing: no neighbour, not itself


def test_tie_order_is_score_then_input_order():
    # Row 0 = {x, y}: rows 1, 2, 4 all score 1/2 against it, row 3 scores 2/3.
    sets = [{0, 1}, {0}, {1}, {0, 1, 2}, {0}]
    idx, score = jaccard_topk(to_csr(sets, 3), k=4, block_size=3)
    assert idx[0].tolist() == [3, 1, 2, 4]
    np.testing.assert_array_equal(score[0], [2 / 3, 0.5, 0.5, 0.5])
    assert idx[1].tolist() == [4, 0, 3, -1]  # {x}: {x} 1.0, then {x,y} 1/2, {x,y,z} 1/3
    # search_neighbours breaks ties by input order, not by image_id.
    out = search_neighbours(frame(["z", "a", "m", "q", "b"], ["train"] * 5,
                                  [["x", "y"], ["x"], ["y"], ["x", "y", "w"], ["x"]]), k=4, block_size=2)
    assert [n for n, _ in pairs(out)["z"]] == ["q", "a", "m", "b"]
    assert out.equals(search_neighbours(frame(["z", "a", "m", "q", "b"], ["train"] * 5,
                                              [["x", "y"], ["x"], ["y"], ["x", "y", "w"], ["x"]]), k=4, block_size=100))


# --- search_neighbours ------------------------------------------------------------------------

def test_search_fewer_candidates_empty_terms_and_duplicate_terms():
    df = frame(["a", "b", "c", "d", "e"], ["train"] * 5,
               [["sea", "sea", "dog"], ["sea"], [], ["cat"], ["dog", "sea"]])
    out = search_neighbours(df, k=15, block_size=2)
    assert out.schema == pl.Schema(NEIGHBOURS_SCHEMA)
    assert out.to_dicts() == [
        {"image_id": "a", "rank": 1, "neighbour_id": "e", "score": 1.0},  # duplicate "sea" counts once
        {"image_id": "a", "rank": 2, "neighbour_id": "b", "score": 0.5},
        {"image_id": "b", "rank": 1, "neighbour_id": "a", "score": 0.5},
        {"image_id": "b", "rank": 2, "neighbour_id": "e", "score": 0.5},
        {"image_id": "e", "rank": 1, "neighbour_id": "a", "score": 1.0},
        {"image_id": "e", "rank": 2, "neighbour_id": "b", "score": 0.5},
    ]  # c (no terms) and d (no shared term) get no rows


def test_splits_are_searched_separately_and_output_follows_input_order():
    rng = np.random.default_rng(7)
    n = 120
    splits = rng.choice(["train", "test"], size=n).tolist()
    sets = random_sets(7, n=n, n_terms=25, max_size=6)
    ids = [f"im{i:03d}" for i in rng.permutation(n)]  # id order differs from input order
    out = search_neighbours(frame(ids, splits, [[f"t{t}" for t in s] for s in sets]), k=5, block_size=9)
    split_of = dict(zip(ids, splits))
    assert all(split_of[a] == split_of[b] for a, b in out.select("image_id", "neighbour_id").iter_rows())
    position = {i: p for p, i in enumerate(ids)}
    keys = [(position[i], r) for i, r in out.select("image_id", "rank").iter_rows()]
    assert keys == sorted(keys)
    for name in ("train", "test"):  # each split equals brute force on that split alone
        rows = [i for i in range(n) if splits[i] == name]
        ref_idx, ref_score = brute_force([sets[i] for i in rows], 5)
        expected = {ids[rows[i]]: [(ids[rows[j]], s) for j, s in zip(ref_idx[i], ref_score[i]) if j >= 0]
                    for i in range(len(rows)) if ref_idx[i, 0] >= 0}
        got = {i: v for i, v in pairs(out).items() if split_of[i] == name}
        assert got == expected


def test_search_logs_per_split(caplog):
    caplog.set_level("INFO", logger="pipeline")
    search_neighbours(frame(["a", "b", "c"], ["train", "train", "test"], [["x"], ["x"], ["x"]]), k=2)
    assert "split 'train': 2 images, 1.00 neighbours found on average, 2 with fewer than 2" in caplog.text
    assert "split 'test': 1 images, 0.00 neighbours found on average, 1 with fewer than 2" in caplog.text


@pytest.mark.parametrize("df, k, message", [
    (pl.DataFrame({"image_id": ["a"], "split": ["train"]}), 3, "missing column 'terms'"),
    (pl.DataFrame({"image_id": ["a"], "split": ["train"], "terms": ["x"]}), 3, "column 'terms' has type String"),
    (frame(["a", "b", "a"], ["train"] * 3, [["x"]] * 3), 3, "image_id 'a' appears more than once \\(rows 0, 2\\)"),
    (frame(["a", None], ["train"] * 2, [["x"]] * 2), 3, "column 'image_id' is null in row 1"),
    (frame(["a", "b"], ["train", None], [["x"]] * 2), 3, "column 'split' is null in row 1"),
    (frame(["a", "b"], ["train"] * 2, [["x"]] * 2), 0, "k must be >= 1"),
])
def test_search_rejects_bad_input(df, k, message):
    with pytest.raises(MangoError, match=f"^meta.parquet: {message}"):
        search_neighbours(df, k=k, source="meta.parquet")


# --- command ----------------------------------------------------------------------------------

def test_cli_round_trip(tmp_path):
    df = frame(["a", "b", "c", "d"], ["train", "train", "test", "test"], [["x", "y"], ["x"], ["y"], ["y", "z"]])
    src, out = tmp_path / "meta.parquet", tmp_path / "out" / "neighbours.parquet"
    df.write_parquet(src)
    result = CliRunner().invoke(app, ["neighbours", str(src), str(out), "--k", "1", "--block-size", "3"])
    assert result.exit_code == 0, result.output
    written = pl.read_parquet(out)
    assert written.equals(search_neighbours(df, k=1))
    assert written.schema == pl.Schema(NEIGHBOURS_SCHEMA)
    assert written.rows() == [("a", 1, "b", 0.5), ("b", 1, "a", 0.5), ("c", 1, "d", 0.5), ("d", 1, "c", 0.5)]
    assert [p.name for p in out.parent.iterdir()] == ["neighbours.parquet"]  # no temporary file left


@pytest.mark.parametrize("columns, message", [
    ({"image_id": ["a", "b"], "split": ["train", "train"]}, "missing column 'terms'"),
    ({"image_id": ["a", "a"], "split": ["train", "train"], "terms": [["x"], ["x"]]}, "image_id 'a' appears more than once"),
])
def test_cli_bad_input_prints_error_without_traceback(tmp_path, columns, message):
    src, out = tmp_path / "bad.parquet", tmp_path / "neighbours.parquet"
    pl.DataFrame(columns).write_parquet(src)
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "neighbours", str(src), str(out), "--k", "3"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and str(src) in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
