"""The inverted-index Jaccard search (the default `jaccard_topk`) against the blocked sparse product
and a dense brute-force reference: identical indices and bit-identical scores, tie order included."""

from __future__ import annotations

import numba
import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from pipeline.neighbours.kernel import Groups, jaccard_topk_index
from pipeline.neighbours.common import binary_csr, brute_force_topk
from pipeline.neighbours.jaccard import jaccard_topk, jaccard_topk_blocked, search_neighbours


def random_matrix(seed: int, n: int, n_terms: int, max_size: int, dup_fraction: float = 0.3,
                  empty_fraction: float = 0.05) -> sp.csr_matrix:
    """Zipf-like term sets with sizes 0..max_size, a share of exact copies of earlier rows (batch
    tagging) and of empty rows, rows shuffled so copies are scattered."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_terms + 1)
    p /= p.sum()
    sets = [np.unique(rng.choice(n_terms, size=rng.integers(1, max_size + 1), p=p)) for _ in range(n)]
    for i in np.flatnonzero(rng.random(n) < dup_fraction):
        sets[i] = sets[rng.integers(0, n)]
    for i in np.flatnonzero(rng.random(n) < empty_fraction):
        sets[i] = np.array([], dtype=np.int64)
    rows = np.repeat(np.arange(n), [s.size for s in sets])
    cols = np.concatenate(sets) if n else np.array([], dtype=np.int64)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n_terms))


def assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])  # bit-identical, nan where padded


@pytest.mark.parametrize("seed, n, n_terms, max_size, k", [
    (0, 300, 30, 6, 10),   # small vocabulary: many equal scores, many identical sets
    (1, 250, 80, 40, 15),  # wide size spread: the size bound prunes, close distinct scores
    (2, 120, 12, 3, 40),   # k above most rows' candidate counts: padding
    (3, 200, 200, 8, 1),   # k = 1, sparse overlaps
    (4, 60, 5, 5, 7),      # tiny vocabulary: groups larger than k
])
def test_index_equals_blocked_equals_dense(seed, n, n_terms, max_size, k):
    X = random_matrix(seed, n, n_terms, max_size)
    want = brute_force_topk(X, k)
    assert_same(jaccard_topk(X, k, method="index"), want)
    assert_same(jaccard_topk(X, k), want)  # auto: the blocked product at this size
    assert_same(jaccard_topk_blocked(X, k, block_size=17), want)
    assert (want[0] == -1).any() or k == 1  # the data exercises padding


def test_query_order_and_thread_count_do_not_change_the_answer():
    # The kernel guesses each query's threshold from the previous one; a different query order or
    # thread count changes the guesses (and which second walks run), never the result.
    X = binary_csr(random_matrix(5, 400, 40, 12))
    want = brute_force_topk(X, 15)
    threads = numba.get_num_threads()
    try:
        for n_threads in sorted({1, threads}):
            numba.set_num_threads(n_threads)
            for block, capacity, ratio in ((1, 1, 0.7), (3, 2, 0.0), (64, 1 << 16, 0.7), (512, 8, 1.0)):
                assert_same(jaccard_topk_index(X, 15, block=block, capacity=capacity, ratio=ratio), want)
    finally:
        numba.set_num_threads(threads)


def test_identical_sets_come_first_in_row_order_and_interleave_with_ties():
    sets = [[0, 1], [0], [0, 1], [0, 1, 2], [0], [0, 1], [2]]
    X = sp.csr_matrix((np.ones(sum(map(len, sets))), (np.repeat(np.arange(7), [len(s) for s in sets]),
                                                       np.concatenate(sets))), shape=(7, 3))
    idx, score = jaccard_topk(X, k=5, method="index")
    assert idx[0].tolist() == [2, 5, 3, 1, 4]  # copies (phi 1), then {0,1,2} 2/3, then {0} 1/2 by row
    np.testing.assert_array_equal(score[0], [1.0, 1.0, 2 / 3, 0.5, 0.5])
    assert idx[5].tolist() == [0, 2, 3, 1, 4]
    assert idx[1].tolist() == [4, 0, 2, 5, 3]  # {0}: its copy, then the {0,1} rows (1/2), then 1/3
    np.testing.assert_array_equal(score[1], [1.0, 0.5, 0.5, 0.5, 1 / 3])
    idx2, score2 = jaccard_topk(X, k=1, method="index")  # the group of three alone fills k: nothing else searched
    assert idx2[:, 0].tolist() == [2, 4, 0, 0, 1, 0, 3]
    assert_same((idx2, score2), brute_force_topk(X, 1))


def test_groups_collapse_exactly_and_order_by_size():
    X = binary_csr(random_matrix(6, 300, 25, 7))
    g = Groups(X)
    keys = [tuple(X.indices[X.indptr[i]:X.indptr[i + 1]]) for i in range(X.shape[0])]
    assert g.n_groups == len(set(keys))
    assert np.all(np.diff(g.size) >= 0)
    for h in range(g.n_groups):
        rows = g.members[g.member_ptr[h]:g.member_ptr[h + 1]]
        assert np.all(np.diff(rows) > 0) and len({keys[r] for r in rows}) == 1
        assert (g.group_of_row[rows] == h).all() and g.size[h] == len(keys[rows[0]])


@pytest.mark.parametrize("shape", [(0, 4), (1, 4), (3, 0), (4, 4)])
def test_degenerate_inputs(shape):
    X = sp.csr_matrix(shape)  # no stored entries: nobody has a neighbour
    if shape == (1, 4):
        X = sp.csr_matrix(np.array([[1, 0, 1, 0]]))  # one row: no other row to be a neighbour
    for method in ("index", "blocked"):
        idx, score = jaccard_topk(X, k=3, method=method)
        assert idx.shape == score.shape == (shape[0], 3)
        assert (idx == -1).all() and np.isnan(score).all()


def test_search_neighbours_single_row_splits_and_default_method():
    df = pl.DataFrame({"image_id": ["a", "b", "c", "d"], "split": ["train", "test", "val", "train"],
                       "terms": [["x", "y"], ["x"], ["x", "y"], ["y"]]},
                      schema={"image_id": pl.String, "split": pl.String, "terms": pl.List(pl.String)})
    out = search_neighbours(df, k=2)
    assert out.rows() == [("a", 1, "d", 0.5), ("d", 1, "a", 0.5)]  # b and c are alone in their split


def test_sets_beyond_the_uint8_counters():
    # Overlaps above 255 need 16-bit counters (counter_dtype): large sets sharing most terms.
    rng = np.random.default_rng(7)
    sets = [np.sort(rng.choice(400, size=int(rng.integers(250, 330)), replace=False)) for _ in range(40)]
    sets += [np.unique(rng.choice(400, size=5)) for _ in range(20)]
    rows = np.repeat(np.arange(len(sets)), [s.size for s in sets])
    X = binary_csr(sp.csr_matrix((np.ones(rows.size), (rows, np.concatenate(sets))), shape=(len(sets), 400)))
    assert Groups(X).size[-1] > 255
    assert_same(jaccard_topk_index(X, 6, block=4), brute_force_topk(X, 6))


def test_group_terms_are_each_set_longest_posting_first():
    # The half-search counts a group's first terms without the hit test, so its terms must be the
    # group's set exactly, reordered by posting length (groups holding the term) descending.
    X = binary_csr(random_matrix(8, 300, 30, 9))
    g = Groups(X)
    df = np.diff(g.post_ptr)  # (T,) groups holding each term
    for h in range(g.n_groups):
        terms = g.terms[g.term_ptr[h]:g.term_ptr[h + 1]]
        row = g.members[g.member_ptr[h]]
        np.testing.assert_array_equal(np.sort(terms), X.indices[X.indptr[row]:X.indptr[row + 1]])
        assert np.all(np.diff(df[terms]) <= 0)
        for t in terms:  # each term's posting list holds h, ascending
            post = g.post[g.post_ptr[t]:g.post_ptr[t + 1]]
            assert h in post and np.all(np.diff(post) > 0)


def _handover(caplog) -> tuple[int, int, int]:
    """(pairs handed over, target groups, groups searched alone) from the kernel's debug line."""
    import re

    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("jaccard index: ") and "half search" in r.getMessage()][-1]
    pairs, targets, alone = re.search(r"\((\d+) pairs to (\d+) targets\).* (\d+) groups searched alone", line).groups()
    return int(pairs), int(targets), int(alone)


def test_both_paths_run_and_agree(caplog):
    # The data must exercise what it tests: pairs handed to finished lower groups (the half-search)
    # and groups searched alone over all groups; ratio 1 searches more of them alone than ratio 0
    # (which still searches alone the groups no lower group hands pairs to).
    import logging

    X = binary_csr(random_matrix(9, 500, 40, 10))
    want = brute_force_topk(X, 10)
    caplog.set_level(logging.DEBUG, logger="pipeline.neighbours.kernel")
    seen = {}
    for ratio in (0.0, 0.7, 1.0):
        caplog.clear()  # each run's own debug line
        assert_same(jaccard_topk_index(X, 10, block=8, ratio=ratio), want)
        seen[ratio] = _handover(caplog)
    assert all(pairs > 0 and targets > 0 for pairs, targets, _ in seen.values())
    assert seen[1.0][2] > seen[0.0][2]


@pytest.mark.parametrize("largest", [255, 256])
def test_counter_width_boundary_with_tiny_buffers(largest, caplog):
    # Sets of 255 tags keep 8-bit counters (an overlap of 255 still fits), 256 need 16 bits; both
    # with buffers of one pair (every block re-run) and either extreme of the hand-over ratio.
    rng = np.random.default_rng(largest)
    base = np.arange(300)
    sets = [np.sort(rng.choice(base, size=largest, replace=False)) for _ in range(12)]
    sets += [sets[0]] * 3 + [np.sort(rng.choice(base, size=int(rng.integers(200, largest)), replace=False)) for _ in range(10)]
    sets += [base[:largest]]  # one set of exactly `largest` tags that all overlap the others heavily
    rows = np.repeat(np.arange(len(sets)), [s.size for s in sets])
    X = binary_csr(sp.csr_matrix((np.ones(rows.size), (rows, np.concatenate(sets))), shape=(len(sets), 300)))
    from pipeline.neighbours.kernel import counter_dtype

    assert Groups(X).size[-1] == largest
    assert counter_dtype(largest) == (np.uint8 if largest == 255 else np.uint16)
    want = brute_force_topk(X, 5)
    import logging

    caplog.set_level(logging.DEBUG, logger="pipeline.neighbours.kernel")
    for capacity, ratio in ((1, 0.0), (1, 1.0), (1 << 16, 0.7)):
        caplog.clear()
        assert_same(jaccard_topk_index(X, 5, block=3, capacity=capacity, ratio=ratio), want)
        assert f"{'uint8' if largest == 255 else 'uint16'} overlap counters" in caplog.text  # the kernel counted in them


def test_one_size_over_many_blocks_with_groups_above_k_copies():
    # All sets of one size (one size class cut into blocks of two groups), several groups with more
    # copies than k: a group's own copies fill its answer; the others still need the half-search.
    rng = np.random.default_rng(11)
    distinct = [np.sort(rng.choice(12, size=4, replace=False)) for _ in range(40)]
    copies = rng.choice([1, 1, 2, 6, 9], size=len(distinct))  # k = 5: some groups hold 6 or 9 rows
    sets = [s for s, c in zip(distinct, copies) for _ in range(c)]
    order = rng.permutation(len(sets))
    sets = [sets[i] for i in order]
    rows = np.repeat(np.arange(len(sets)), [s.size for s in sets])
    X = binary_csr(sp.csr_matrix((np.ones(rows.size), (rows, np.concatenate(sets))), shape=(len(sets), 12)))
    g = Groups(X)
    assert np.unique(g.size).size == 1 and np.diff(g.member_ptr).max() > 5
    want = brute_force_topk(X, 5)
    for block, capacity in ((2, 1), (2, 1 << 16), (1, 4)):
        assert_same(jaccard_topk_index(X, 5, block=block, capacity=capacity), want)


@pytest.mark.parametrize("drop_empty", [False, True])
def test_membership_matrix_by_hand(drop_empty):
    # Columns: the distinct values sorted (bytewise, so "B" before "a"); repeats count once; a null
    # list, an empty list and null values add nothing; "" is a value unless drop_empty.
    values = pl.Series([["b", "a", "b"], [], None, ["", "c", None], ["a", "B"], ["é", "c"]], dtype=pl.List(pl.String))
    from pipeline.neighbours.common import membership_matrix

    X = membership_matrix(values, drop_empty=drop_empty)
    columns = ["B", "a", "b", "c", "é"] if drop_empty else ["", "B", "a", "b", "c", "é"]
    want = np.zeros((6, len(columns)), dtype=np.int32)
    for i, row in enumerate(values.to_list()):
        for v in row or []:
            if v is not None and v in columns:
                want[i, columns.index(v)] = 1
    assert X.dtype == np.int32 and X.has_canonical_format
    np.testing.assert_array_equal(X.toarray(), want)
    assert membership_matrix(pl.Series([[], None], dtype=pl.List(pl.String))).shape == (2, 0)
