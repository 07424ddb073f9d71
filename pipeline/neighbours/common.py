"""What every neighbour search shares: the input check, the binary set matrices, the bucketed exact
top-k selection, the per-split driver and the output frame (NEIGHBOURS_SCHEMA).

Every search returns, per query row, its k best candidates: higher score first, ties by the lower
row index (input order), padded with -1 / nan when fewer than k candidates exist.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.errors import MangoError
from pipeline.schemas import METADATA_SCHEMA, NEIGHBOURS_SCHEMA

log = logging.getLogger(__name__)

# Buckets of the coarse pre-selection: q = floor(phi * BUCKETS) is monotone in phi, so keeping
# every pair whose bucket is at least the bucket of a row's k-th best pair keeps its exact top k.
BUCKETS = 1024


def binary_csr(X, what: str = "X") -> sp.csr_matrix:
    """X as a canonical int32 CSR matrix (sorted indices, no duplicates) whose stored entries are all 1."""
    if not sp.issparse(X) or X.ndim != 2:
        raise MangoError(f"{what} must be a 2-D scipy sparse matrix, got {type(X).__name__}")
    X = sp.csr_matrix(X, copy=True)
    X.sum_duplicates()
    X.eliminate_zeros()
    X.data = np.ones_like(X.data, dtype=np.int32)
    return X


def membership_matrix(values: pl.Series, *, drop_empty: bool = False) -> sp.csr_matrix:
    """(n, V) binary int32 CSR matrix of a list-of-strings column: row i has a 1 in the column of
    every distinct non-null value of its list (null list = none; `drop_empty`: "" is none too).

    Columns are the distinct values in sorted order, so the matrix does not depend on the order of
    the other rows. The one builder of the term matrix (searches, Meta+Logistic) and of groups.
    """
    pairs = pl.DataFrame({"value": values}).with_row_index("row").explode("value").drop_nulls("value")
    if drop_empty:
        pairs = pairs.filter(pl.col("value") != "")
    if pairs.height == 0:
        return sp.csr_matrix((values.len(), 0), dtype=np.int32)
    # Column ids by casting to an Enum of the sorted distinct values (a hash lookup per value; ranking
    # or de-duplicating the string pairs themselves took ~10x longer at 270k images); a value repeated
    # in a list sums into one entry, set back to 1.
    columns = pairs["value"].unique().sort()
    cols = pairs["value"].cast(pl.Enum(columns)).to_physical().to_numpy()
    X = sp.csr_matrix((np.ones(cols.size, dtype=np.int32), (pairs["row"].to_numpy(), cols)), shape=(values.len(), columns.len()))
    X.sum_duplicates()
    X.data[:] = 1
    return X


def coarse_keep(rows: np.ndarray, common: np.ndarray, union: np.ndarray, b: int, k: int,
                self_pairs: np.ndarray | None = None) -> np.ndarray:
    """Mask of the pairs that can be in the top k of their query row, without sorting.

    rows: (P,) query position in [0, b) of each pair; common, union: (P,) |a ∩ b| and |a ∪ b|.
    A per-row histogram of q = floor(phi * BUCKETS) gives the bucket of each row's k-th best pair;
    every pair at or above it survives. `self_pairs`: (b,) bool, rows whose pairs include the row
    itself (phi = 1), which is no candidate and is not counted towards k.
    """
    q = (common.astype(np.float32) / union.astype(np.float32) * BUCKETS).astype(np.int64)  # (P,) in [0, BUCKETS]
    hist = np.bincount(rows * (BUCKETS + 1) + q, minlength=b * (BUCKETS + 1)).reshape(b, BUCKETS + 1)
    if self_pairs is not None:
        hist[self_pairs, BUCKETS] -= 1
    at_least = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # (b, B+1) pairs with bucket >= t
    threshold = np.maximum((at_least >= k).sum(axis=1) - 1, 0)  # (b,) bucket of the k-th best pair
    return q >= threshold[rows]


def first_k(rows: np.ndarray, cols: np.ndarray, phi: np.ndarray, b: int,
            k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort pairs by (row, phi desc, col), drop repeated (row, col) pairs, keep the first k of each row.

    Returns rows, cols, phi and rank (0-based within the row) of the kept pairs.
    """
    order = np.lexsort((cols, -phi, rows))
    rows, cols, phi = rows[order], cols[order], phi[order]
    new = np.ones(rows.size, dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])  # False: the same pair found twice
    rows, cols, phi = rows[new], cols[new], phi[new]
    first = np.searchsorted(rows, np.arange(b))  # (b,) position of each row's first pair
    rank = np.arange(rows.size) - first[rows]  # (S,) 0-based rank within the row
    top = rank < k
    return rows[top], cols[top], phi[top], rank[top]


def validate(df: pl.DataFrame, k: int, block_size: int, source: str) -> None:
    """Check a search's input (METADATA_SCHEMA columns, unique non-null ids) and its k / block size."""
    for name, dtype in METADATA_SCHEMA.items():
        if name not in df.columns:
            raise MangoError(f"{source}: missing column '{name}' (columns present: {', '.join(df.columns)})")
        if df.schema[name] != dtype:
            raise MangoError(f"{source}: column '{name}' has type {df.schema[name]}, expected {dtype}")
    for name in ("image_id", "split"):
        nulls = df[name].is_null()
        if nulls.any():
            raise MangoError(f"{source}: column '{name}' is null in row {int(nulls.arg_max())}; expected a string")
    dup = df["image_id"].is_duplicated()
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        first = df["image_id"][int(rows[0])]
        same = rows[df["image_id"].gather(rows).to_numpy() == first]
        raise MangoError(f"{source}: image_id '{first}' appears more than once (rows {', '.join(map(str, same[:5]))}); "
                         f"expected unique ids ({df['image_id'].filter(dup).n_unique()} duplicated id(s))")
    if k < 1:
        raise MangoError(f"{source}: k must be >= 1, got {k}")
    if block_size < 1:
        raise MangoError(f"{source}: block_size must be >= 1, got {block_size}")


def topk_per_split(split: pl.Series, k: int, search, describe=None) -> tuple[np.ndarray, np.ndarray]:
    """Run a top-k `search` within each split and map its local rows back to global ones.

    search(rows) -> (local_idx, local_score), (s, k) arrays over the split's `rows` (-1 / nan
    padding), as `jaccard_topk` returns; describe(rows), if given, adds a note to the split's log
    line. Returns (n, k) global neighbour rows (-1 = none) and scores. Shared by the Jaccard,
    hierarchy and semantic searches, so every variant maps and reports splits the same way.
    """
    n = split.len()
    idx = np.full((n, k), -1, dtype=np.int64)  # (n, k) global rows of the neighbours
    score = np.full((n, k), np.nan, dtype=np.float64)
    values = split.to_numpy()
    for name in split.unique(maintain_order=True).to_list():
        rows = np.flatnonzero(values == name)  # (s,) global rows of this split
        local_idx, local_score = search(rows)
        found = local_idx >= 0
        idx[rows] = np.where(found, rows[np.maximum(local_idx, 0)], -1)
        score[rows] = local_score
        counts = found.sum(axis=1)
        note = f" ({describe(rows)})" if describe else ""
        log.info("neighbours: split '%s': %d images%s, %.2f neighbours found on average, %d with fewer than %d "
                 "(%d without any)", name, rows.size, note, counts.mean(), int((counts < k).sum()), k, int((counts == 0).sum()))
    return idx, score


def neighbours_frame(ids: pl.Series, idx: np.ndarray, score: np.ndarray) -> pl.DataFrame:
    """NEIGHBOURS_SCHEMA rows from (n, k) neighbour rows (-1 = none) and scores; input order, then rank."""
    image, rank = np.nonzero(idx >= 0)  # row-major: input order, then rank
    return pl.DataFrame(
        {
            "image_id": ids.gather(image),
            "rank": rank + 1,
            "neighbour_id": ids.gather(idx[image, rank]),
            "score": score[image, rank],
        },
        schema=NEIGHBOURS_SCHEMA,
    )


def brute_force_topk(X, k: int, *, queries: np.ndarray | None = None,
                     candidates=None) -> tuple[np.ndarray, np.ndarray]:
    """The reference answer of every Jaccard search, for tests and benchmarks: for each query row
    (default every row), every other row sharing a term among `candidates(i)` (default all rows),
    sorted by (-phi, row), the first k; padded with -1 / nan. One full row of overlaps at a time:
    slow, obviously right, and with the same float64 division as the searches."""
    X = binary_csr(X, "brute_force_topk: X")
    n = X.shape[0]
    queries = np.arange(n) if queries is None else np.asarray(queries)
    sizes = np.diff(X.indptr)
    idx = np.full((queries.size, k), -1, dtype=np.int64)
    score = np.full((queries.size, k), np.nan)
    for r, i in enumerate(queries):
        rows = np.arange(n) if candidates is None else np.asarray(candidates(i), dtype=np.int64)
        inter = (X[rows] @ X[i].T).toarray().ravel()  # (s,) overlaps with row i
        keep = (inter > 0) & (rows != i)
        cand, inter = rows[keep], inter[keep]
        phi = inter / (sizes[i] + sizes[cand] - inter)
        order = np.lexsort((cand, -phi))[:k]
        idx[r, :order.size], score[r, :order.size] = cand[order], phi[order]
    return idx, score
