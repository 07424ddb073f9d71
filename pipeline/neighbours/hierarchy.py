"""Hierarchy search: exact Jaccard neighbours within an image's group/collection topics (section 3.2).

For large noisy vocabularies such as NUS-WIDE's, the paper searches each image's neighbours "based
on the user tags within a sub-image set, which is consist of the images from the collections with
similar topics". Here a partition column of metadata.parquet (e.g. `groups`, the Flickr
group/collection titles carried by `lemmatise`) says which topics each image belongs to:

- candidates of a query i in one or more groups: the other images of its split that are members of
  at least one of i's groups (the union of its groups' members) and share a term with i;
- an image in no group falls back to the whole split: its candidates are every other image of the
  split sharing a term (grouped or not). Images without a group are candidates only of such queries;
- score, order and padding exactly as in `pipeline.neighbours.jaccard`: phi = |a ∩ b| / |a ∪ b| (the same
  float64 division), higher phi first, ties by input order, fewer than k candidates -> fewer rows.

Method: each group is searched on its own, its members against its members (blocked sparse
products X[block] @ X[members].T, exact top k of each row), and an image in several groups merges
its per-group lists (a candidate found in two groups counts once). The work is the sum over groups
of the term-sharing pairs among members, far less than the whole split when groups are topics;
memory is bounded by one block of one group. Images in no group take their rows of the plain
search of the whole split (`pipeline.neighbours.jaccard.jaccard_topk`), run once when there are any.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import scipy.sparse as sp
from pipeline.progress import progress

from pipeline.errors import MangoError
from pipeline.neighbours.common import (binary_csr, coarse_keep, first_k, membership_matrix, neighbours_frame,
                                        topk_per_split, validate)
from pipeline.neighbours.jaccard import jaccard_topk

log = logging.getLogger(__name__)

_RESERVED = ("image_id", "split", "terms")


def partition_matrix(values: pl.Series, *, source: str = "metadata") -> sp.csr_matrix:
    """(n, g) binary membership matrix of a partition column.

    values: List(String) (each image's groups; null or empty list = no group) or String (one group
    per image; null = no group). Empty strings are no group. Group columns are the sorted distinct
    values, so the matrix does not depend on the row order of other images' groups.
    """
    if values.dtype == pl.String:
        values = pl.DataFrame({"v": values}).select(pl.concat_list("v")).to_series()  # null -> [null]: none
    elif values.dtype != pl.List(pl.String):
        raise MangoError(f"{source}: partition column '{values.name}' has type {values.dtype}, "
                         "expected a list of strings (one entry per group) or a string")
    return membership_matrix(values, drop_empty=True)


def _search(X: sp.csr_matrix, sizes: np.ndarray, queries: np.ndarray, cand: np.ndarray, k: int,
            block_size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Exact top k of each query row among the candidate rows (global rows; self excluded).

    Returns (global query row, global candidate row, phi) triples, at most k per query.
    """
    XcT = X[cand].T.tocsr()  # (T, |C|), converted once for the blocks below
    out = []
    for s in range(0, queries.size, block_size):
        q = queries[s:s + block_size]  # (b,) global query rows
        inter = (X[q] @ XcT).tocoo()  # (b, |C|) shared-term counts of the pairs sharing a term
        rows = inter.row.astype(np.int64)
        cols = cand[inter.col]  # (P,) global candidate rows
        keep = cols != q[rows]  # never the query itself
        rows, cols, common = rows[keep], cols[keep], inter.data[keep].astype(np.int64)
        union = sizes[q[rows]] + sizes[cols] - common  # (P,) |a ∪ b|
        keep = coarse_keep(rows, common, union, q.size, k)
        r, c, phi, _ = first_k(rows[keep], cols[keep], common[keep] / union[keep], q.size, k)
        out.append((q[r], c, phi))
    return out


def partitioned_topk(X: sp.spmatrix, G: sp.spmatrix, k: int, block_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k Jaccard neighbours of every row of X among the rows sharing a group with it.

    X: (n, T) term sets (nonzero = member); G: (n, g) group membership. A row with no group searches
    every row. Returns idx (n, k) int64 and score (n, k) float64, best first, ties by lower row index,
    padded with -1 / nan, exactly as `pipeline.neighbours.jaccard.jaccard_topk` (which it equals when no row
    has a group, or when every row is in one common group).

    Each group is searched on its own (its members against its members), then each query's per-group
    top-k lists are merged. This is exact: a candidate in the top k of the union of a query's groups
    is beaten by fewer than k candidates of the union, so by fewer than k of any group holding it.
    """
    if k < 1:
        raise MangoError(f"partitioned_topk: k must be >= 1, got {k}")
    if block_size < 1:
        raise MangoError(f"partitioned_topk: block_size must be >= 1, got {block_size}")
    if X.shape[0] != G.shape[0]:
        raise MangoError(f"partitioned_topk: X has {X.shape[0]} rows but G has {G.shape[0]}")
    X, G = binary_csr(X, "partitioned_topk: X"), binary_csr(G, "partitioned_topk: G")
    n = X.shape[0]
    sizes = np.diff(X.indptr).astype(np.int64)  # (n,) |t_i|
    has_terms = sizes > 0
    GT = G.T.tocsr()  # (g, n): each group's member rows, ascending
    members = [GT.indices[GT.indptr[g]:GT.indptr[g + 1]] for g in range(GT.shape[0])]
    members = [m[has_terms[m]] for m in members]
    members = [m for m in members if m.size >= 2]  # a lone member has no candidate
    ungrouped = np.flatnonzero((np.diff(G.indptr) == 0) & has_terms)
    triples = []
    for m in progress(members, desc="neighbours: hierarchy top-k", unit="group", disable=len(members) <= 1):
        triples += _search(X, sizes, m, m, k, block_size)
    idx = np.full((n, k), -1, dtype=np.int64)
    score = np.full((n, k), np.nan, dtype=np.float64)
    if triples:
        rows, cols, phi = (np.concatenate(t) for t in zip(*triples))
        rows, cols, phi, rank = first_k(rows, cols, phi, n, k)  # merge a query's groups
        idx[rows, rank] = cols
        score[rows, rank] = phi
    if ungrouped.size:  # no group: the plain search of the whole split (never costlier than without groups)
        all_idx, all_score = jaccard_topk(X, k, block_size)
        idx[ungrouped], score[ungrouped] = all_idx[ungrouped], all_score[ungrouped]
    return idx, score


def search_neighbours_partitioned(df: pl.DataFrame, k: int, block_size: int = 2048, *, partition: str,
                                  source: str = "metadata") -> pl.DataFrame:
    """Top-k Jaccard neighbours of every image within its split and its `partition` groups.

    df: image_id, split, terms as for `pipeline.neighbours.jaccard.search_neighbours`, plus the column named
    by `partition` (list of group names, or one name; null/empty = no group -> whole split).
    Returns NEIGHBOURS_SCHEMA rows in input order of image_id, then rank (1-based).
    """
    validate(df, k, block_size, source)
    if partition in _RESERVED:
        raise MangoError(f"{source}: partition column must not be one of {', '.join(_RESERVED)}, got '{partition}'")
    if partition not in df.columns:
        raise MangoError(f"{source}: partition column '{partition}' not found (columns present: {', '.join(df.columns)}); "
                         "re-run `mango lemmatise` on a dataset with that metadata field, or set neighbours.partition: none")
    X = membership_matrix(df["terms"])
    G = partition_matrix(df[partition], source=source)
    idx, score = topk_per_split(
        df["split"], k, lambda rows: partitioned_topk(X[rows], G[rows], k, block_size),
        describe=lambda rows: f"{int((np.diff(G[rows].indptr) == 0).sum())} in no '{partition}' group: searched in the whole split")
    return neighbours_frame(df["image_id"], idx, score)
