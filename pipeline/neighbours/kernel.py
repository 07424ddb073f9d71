"""Exact top-k Jaccard neighbours by an inverted index with size pruning, in a compiled kernel.

Same definition as `pipeline.neighbours.jaccard.jaccard_topk_blocked` (the reference): candidates of row i
are the other rows sharing at least one term, ordered by phi = |a ∩ b| / |a ∪ b| descending, ties
by the lower row index; identical rows are candidates of each other with phi = 1; fewer than k
candidates are padded with -1 / nan. Scores are the same float64 division, so results are
bit-identical, not merely close.

Why it is fast. Measured on synthetic NUS-WIDE-shaped tags (3,000 Zipf-distributed tags, ~10 per
image, 2 cores): the unavoidable work of exact overlap counting is the sum over tags of df^2,
about 1.3e10 counter increments at 270k images, about 8 s on 2 cores at ~1 ns per increment; a
per-row counter array over candidates took ~78 s at 270k, the same with size-ordered groups and
size-bound pruning ~20 s; prefix filtering skipped only ~22% of the work (the 15th neighbour's
Jaccard is ~0.2) and cost more than it saved; identical tag sets (batch uploads) are common. So:
1. Identical term sets are collapsed into one *group* first; a group is searched once and its
   member rows are expanded only when the answer is assembled. A group of c rows already gives
   each member c - 1 neighbours of phi 1, so only k - (c - 1) further rows are searched for.
2. Groups are numbered by set size, so every posting list (the groups holding a term, ascending)
   is also sorted by size, and the groups of a range of sizes are one contiguous id range.
3. Per query, overlaps are counted in a dense uint16 counter array over groups (no hashing, no
   list of touched groups: the counted id range is cleared by one dense fill at the end), one
   *size band* at a time (sizes within a factor BAND_RATIO), starting at the query's own size
   |a| and moving outward in the order of the best phi a band can reach, min(|a|, |b|) /
   max(|a|, |b|). Once k rows are known, a band whose bound is below the k-th best phi cannot
   contribute and the search stops (the size bound: J(a, b) >= s needs s|a| <= |b| <= |a|/s);
   bands whose bound equals the k-th score are still counted, as a tied lower row must win.
4. Only groups whose overlap reaches the least overlap that can still make the cut are scored
   (|a ∩ b| >= s (|a| + |b|) / (1 + s)); they are noted by a rarely taken branch while counting.
   The first band would otherwise score nearly everything it touches, so the bar starts at the
   previous query's k-th score (queries of similar size run in sequence); when that guess was too
   high, a second walk over the band scores the overlaps below it: a wrong guess costs time,
   never exactness.
5. Queries run in parallel (numba prange), each worker with its own counters.

The compiled functions are cached on disk (numba cache=True): the first call in a fresh
environment compiles them (seconds), later processes load them.
"""

from __future__ import annotations

import logging

import numba as nb
import numpy as np
import scipy.sparse as sp
from pipeline.progress import progress

log = logging.getLogger(__name__)


# --- collapsing identical term sets ----------------------------------------------------------

class Groups:
    """Rows of a binary CSR matrix grouped by identical term set, groups ordered by set size.

    Attributes (G groups, n rows, T terms; group ids are 0..G-1 ordered by (size, first row)):
      size         (G,) int32 |set| of each group, non-decreasing
      term_ptr     (G+1,) int64, terms (nnz_G,) int32: each group's terms (CSR)
      member_ptr   (G+1,) int64, members (n,) int64: each group's rows, ascending (CSR)
      group_of_row (n,) int64 group id of every row
      size_start   (max_size+2,) int64: the groups of size L are ids size_start[L]:size_start[L+1]
      post_ptr     (T+1,) int64, post (nnz_G,) int32: each term's groups, ascending (CSC)
    """

    def __init__(self, X: sp.csr_matrix):
        n, n_terms = X.shape
        indptr, indices = X.indptr, X.indices
        # Exact grouping: the sorted term ids of a row, as bytes, are its key.
        first_row: dict[bytes, int] = {}
        label = np.empty(n, dtype=np.int64)  # (n,) provisional group = first row with that set
        for i in range(n):
            label[i] = first_row.setdefault(indices[indptr[i]:indptr[i + 1]].tobytes(), i)
        row_size = np.diff(indptr).astype(np.int32)  # (n,)
        reps = np.fromiter(first_row.values(), dtype=np.int64, count=len(first_row))  # (G,) first rows, ascending
        reps = reps[np.argsort(row_size[reps], kind="stable")]  # (G,) by size, then first row
        rank = np.empty(n, dtype=np.int64)
        rank[reps] = np.arange(reps.size)
        self.group_of_row = rank[label]  # (n,)
        self.size = row_size[reps]  # (G,)
        members = np.argsort(self.group_of_row, kind="stable")  # (n,) rows by group, ascending within
        self.members = members.astype(np.int64)
        self.member_ptr = np.concatenate(([0], np.cumsum(np.bincount(self.group_of_row, minlength=reps.size)))).astype(np.int64)
        G = X[reps]  # (G, T) one row per group
        self.term_ptr = G.indptr.astype(np.int64)
        self.terms = G.indices.astype(np.int32)
        P = sp.csc_matrix(G)  # (G, T) column-major: each term's groups
        P.sort_indices()
        self.post_ptr = P.indptr.astype(np.int64)
        self.post = P.indices.astype(np.int32)
        max_size = int(self.size[-1]) if self.size.size else 0
        self.size_start = np.searchsorted(self.size, np.arange(max_size + 2)).astype(np.int64)
        self.n_rows, self.n_terms = n, n_terms

    @property
    def n_groups(self) -> int:
        return int(self.size.size)


# --- the compiled kernels (numba, cached on disk) ----------------------------------------------

BAND_RATIO = 1.5  # width of a size band: fewer, wider bands cost less than the pruning they lose


@nb.njit(cache=True, nogil=True)
def _heap_push(hp, hc, n, phi, cnt):
    """Push (phi, cnt) on the min-heap hp/hc of n items (keyed by phi); returns the new n."""
    i = n
    hp[i] = phi
    hc[i] = cnt
    while i > 0:
        parent = (i - 1) // 2
        if hp[parent] <= hp[i]:
            break
        hp[parent], hp[i] = hp[i], hp[parent]
        hc[parent], hc[i] = hc[i], hc[parent]
        i = parent
    return n + 1


@nb.njit(cache=True, nogil=True)
def _heap_pop(hp, hc, n):
    """Remove the minimum of the min-heap hp/hc of n items; returns the new n."""
    n -= 1
    hp[0] = hp[n]
    hc[0] = hc[n]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        child = left
        if left + 1 < n and hp[left + 1] < hp[left]:
            child = left + 1
        if hp[i] <= hp[child]:
            break
        hp[child], hp[i] = hp[i], hp[child]
        hc[child], hc[i] = hc[i], hc[child]
        i = child
    return n


@nb.njit(cache=True, nogil=True)
def _min_overlap(s, a, b):
    """Smallest overlap c >= 1 that can give phi = c / (a + b - c) >= s for sets of sizes a, b.
    Rounded down by a margin far above float error: it only decides which pairs are scored
    exactly, never the score."""
    x = s * (a + b) / (1.0 + s)
    return max(1, int(np.ceil(x - 1e-9 * max(1.0, x))))


@nb.njit(cache=True, nogil=True)
def _offer(h, phi, need, member_ptr, hp, hc, heap_n, rows, cand_grp, cand_phi, n_cand):
    """Keep group h, of score phi, as a candidate if it is at least the current k-th best row's
    score; the heap hp/hc of the best groups holds `rows` rows. Returns (heap_n, rows, n_cand)."""
    if rows >= need and phi < hp[0]:
        return heap_n, rows, n_cand
    cand_grp[n_cand] = h
    cand_phi[n_cand] = phi
    n_cand += 1
    if rows < need or phi > hp[0]:
        n_members = member_ptr[h + 1] - member_ptr[h]
        heap_n = _heap_push(hp, hc, heap_n, phi, n_members)
        rows += n_members
        while heap_n > 1 and rows - hc[0] >= need:  # the k-th row is still covered without the worst group
            rows -= hc[0]
            heap_n = _heap_pop(hp, hc, heap_n)
    return heap_n, rows, n_cand


@nb.njit(cache=True, nogil=True)
def _search_group(g, k, guess, size, term_ptr, terms, member_ptr, members, size_start, post_ptr, post,
                  count, hits, cand_grp, cand_phi, lo, hi, end, start, band_start, band_end, hp, hc,
                  buf_phi, buf_row, out_row, out_phi):
    """Top rows of the other groups for query group g; writes out_row[g], out_phi[g]. Returns
    (rows written, the k-th best score or 0). Work arrays are per worker; count is zero on entry
    and on exit.

    Per size band, one walk over the band's postings counts overlaps and notes each group whose
    overlap reaches c_spec (a rarely taken branch); only those are scored. c_spec is the least
    overlap that can reach max(current k-th best score, guess), where `guess` is the previous
    query's k-th score: without it the first band would score nearly every group it touches.
    If the band ends with a k-th score below what c_spec assumed, a second walk over the same
    postings scores the groups with an overlap between the exact bound and c_spec, so the
    guess costs time when wrong, never exactness. The bands searched form one contiguous range
    of group ids, cleared at the end by one dense fill (cheaper than revisiting the postings)."""
    a = size[g]
    need = k - (member_ptr[g + 1] - member_ptr[g] - 1)  # rows still wanted beyond g's own members
    if a == 0 or need <= 0:
        return 0, 0.0
    t0, t1 = term_ptr[g], term_ptr[g + 1]
    m = t1 - t0
    for j in range(m):  # per term: cursors just below and at the first group of size a
        t = terms[t0 + j]
        start[j], end[j] = post_ptr[t], post_ptr[t + 1]
        p = start[j] + np.searchsorted(post[start[j]:end[j]], size_start[a])
        hi[j], lo[j] = p, p - 1
    n_groups = size.shape[0]
    largest = size[n_groups - 1]
    id_lo, id_hi = size_start[a], size_start[a]  # group ids whose counters may be nonzero
    n_cand = 0
    heap_n = 0
    rows = 0  # rows held by the heap of the best groups; once rows >= need, hp[0] is the k-th score
    while True:
        up_id = n_groups  # the nearest groups above and below the cursors
        down_id = -1
        for j in range(m):
            if hi[j] < end[j] and post[hi[j]] < up_id:
                up_id = post[hi[j]]
            if lo[j] >= start[j] and post[lo[j]] > down_id:
                down_id = post[lo[j]]
        if up_id == n_groups and down_id < 0:
            break
        bound_up = a / size[up_id] if up_id < n_groups else -1.0  # best phi reachable in each direction
        bound_down = size[down_id] / a if down_id >= 0 else -1.0
        going_up = bound_up >= bound_down
        if rows >= need and max(bound_up, bound_down) < hp[0]:
            break  # no remaining band can reach the k-th best score
        if going_up:  # the band: sizes b_lo..b_hi, within a factor BAND_RATIO of the nearest one
            b_lo = size[up_id]
            b_hi = max(b_lo, min(int(b_lo * BAND_RATIO), largest))
        else:
            b_hi = size[down_id]
            b_lo = max(1, min(b_hi, int(np.ceil(b_hi / BAND_RATIO))))
        first, stop = size_start[b_lo], size_start[b_hi + 1]  # the band's group ids
        id_lo, id_hi = min(id_lo, first), max(id_hi, stop)
        c_exact = 1 if rows < need else _min_overlap(hp[0], a, b_lo)  # b_lo: the loosest bound in the band
        c_spec = max(c_exact, _min_overlap(guess, a, b_lo))
        n_hit = 0
        for j in range(m):  # walk 1: count the band's overlaps, note the groups reaching c_spec
            if going_up:
                p, e = hi[j], end[j]
                band_start[j] = p
                while p < e:
                    h = post[p]
                    if h >= stop:
                        break
                    c = count[h] + 1
                    count[h] = c
                    if c == c_spec:
                        hits[n_hit] = h
                        n_hit += 1
                    p += 1
                hi[j] = band_end[j] = p
            else:
                p, e = lo[j], start[j]
                band_end[j] = p + 1
                while p >= e:
                    h = post[p]
                    if h < first:
                        break
                    c = count[h] + 1
                    count[h] = c
                    if c == c_spec:
                        hits[n_hit] = h
                        n_hit += 1
                    p -= 1
                lo[j] = p
                band_start[j] = p + 1
        for q in range(n_hit):
            h = hits[q]
            if h != g:
                c = count[h]
                heap_n, rows, n_cand = _offer(h, np.float64(c) / np.float64(a + size[h] - c), need, member_ptr,
                                              hp, hc, heap_n, rows, cand_grp, cand_phi, n_cand)
        c_exact = 1 if rows < need else _min_overlap(hp[0], a, b_lo)
        if c_exact < c_spec:  # the guess was too high: walk 2 scores the overlaps c_exact..c_spec - 1
            for j in range(m):
                for p in range(band_start[j], band_end[j]):
                    h = post[p]
                    c = count[h]
                    if c < c_exact or c >= c_spec or h == g:
                        continue
                    count[h] = 0  # scored: later postings of h skip it
                    heap_n, rows, n_cand = _offer(h, np.float64(c) / np.float64(a + size[h] - c), need, member_ptr,
                                                  hp, hc, heap_n, rows, cand_grp, cand_phi, n_cand)
                    if rows >= need:
                        c_exact = max(c_exact, _min_overlap(hp[0], a, b_lo))
    count[id_lo:id_hi] = 0
    # Every candidate scoring at least the k-th best row, with up to `need` of its lowest rows.
    s = hp[0] if rows >= need else 0.0
    n_buf = 0
    for q in range(n_cand):
        if cand_phi[q] >= s:
            h = cand_grp[q]
            r0 = member_ptr[h]
            for r in range(r0, min(member_ptr[h + 1], r0 + need)):
                buf_phi[n_buf] = -cand_phi[q]
                buf_row[n_buf] = members[r]
                n_buf += 1
    by_row = np.argsort(buf_row[:n_buf])
    order = by_row[np.argsort(buf_phi[:n_buf][by_row], kind="mergesort")]  # phi descending, then row
    n_out = min(need, n_buf)
    for r in range(n_out):
        out_row[g, r] = buf_row[order[r]]
        out_phi[g, r] = -buf_phi[order[r]]
    return n_out, s


@nb.njit(cache=True, parallel=True)
def _search_groups(queries, n_chunks, k, size, term_ptr, terms, member_ptr, members, size_start,
                   post_ptr, post, counter_proto, out_row, out_phi, out_len):
    """_search_group for every group in `queries`, spread over n_chunks parallel chunks
    (chunk c takes queries c, c + n_chunks, ...: mixed sizes, balanced work). counter_proto
    (empty) sets the counters' dtype: uint16 unless a set has 65,536 terms or more."""
    n_groups = size.shape[0]
    n_rows = members.shape[0]
    max_terms = 0
    for g in range(n_groups):
        max_terms = max(max_terms, term_ptr[g + 1] - term_ptr[g])
    for c in nb.prange(n_chunks):
        count = np.zeros(n_groups, dtype=counter_proto.dtype)  # (G,) overlap counters
        hits = np.empty(n_groups, dtype=np.int64)  # (G,) groups of a band whose overlap reached c_min
        cand_grp = np.empty(n_groups, dtype=np.int64)  # (G,) groups that may make the final cut
        cand_phi = np.empty(n_groups, dtype=np.float64)  # (G,) and their scores
        lo = np.empty(max_terms, dtype=np.int64)  # per query term: cursors into its postings
        hi = np.empty(max_terms, dtype=np.int64)
        end = np.empty(max_terms, dtype=np.int64)
        start = np.empty(max_terms, dtype=np.int64)
        band_start = np.empty(max_terms, dtype=np.int64)  # per query term: the current band's postings
        band_end = np.empty(max_terms, dtype=np.int64)
        hp = np.empty(k + 2, dtype=np.float64)  # min-heap of the best groups' scores
        hc = np.empty(k + 2, dtype=np.int64)  # and their row counts
        buf_phi = np.empty(n_rows, dtype=np.float64)
        buf_row = np.empty(n_rows, dtype=np.int64)
        guess = 0.0  # the previous query's k-th score: neighbouring queries have similar sizes
        for q in range(c, queries.shape[0], n_chunks):
            g = queries[q]
            out_len[g], guess = _search_group(g, k, guess, size, term_ptr, terms, member_ptr, members, size_start,
                                              post_ptr, post, count, hits, cand_grp, cand_phi, lo, hi, end, start,
                                              band_start, band_end, hp, hc, buf_phi, buf_row, out_row, out_phi)


@nb.njit(cache=True, parallel=True)
def _assemble(k, group_of_row, size, member_ptr, members, out_row, out_phi, out_len, idx, score):
    """Each row's answer: the other members of its group (phi 1, ascending rows), then its
    group's searched rows. Rows without terms keep -1 / nan."""
    for i in nb.prange(group_of_row.shape[0]):
        g = group_of_row[i]
        if size[g] == 0:
            continue
        r = 0
        for p in range(member_ptr[g], member_ptr[g + 1]):
            if r == k:
                break
            j = members[p]
            if j != i:
                idx[i, r] = j
                score[i, r] = 1.0
                r += 1
        for p in range(out_len[g]):
            if r == k:
                break
            idx[i, r] = out_row[g, p]
            score[i, r] = out_phi[g, p]
            r += 1


def jaccard_topk_index(X: sp.csr_matrix, k: int, n_batches: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k Jaccard neighbours of every row of X among its other rows (see module doc).

    X must be a canonical binary CSR matrix (sorted indices, no duplicates, all stored values 1),
    as `pipeline.neighbours.common.binary_csr` makes it. Returns idx (n, k) int64 and score (n, k)
    float64, padded with -1 / nan. `n_batches` only sets the progress bar's granularity.
    """
    n = X.shape[0]
    groups = Groups(X)
    G = groups.n_groups
    out_row = np.full((G, k), -1, dtype=np.int64)  # (G, k) best rows of the other groups
    out_phi = np.full((G, k), np.nan, dtype=np.float64)
    out_len = np.zeros(G, dtype=np.int64)
    n_chunks = 8 * nb.get_num_threads()
    narrow = G == 0 or groups.size[-1] <= np.iinfo(np.uint16).max  # counts never exceed the largest set
    counter_proto = np.empty(0, dtype=np.uint16 if narrow else np.int64)
    n_batches = max(1, min(n_batches, G))
    batches = [np.arange(b, G, n_batches, dtype=np.int64) for b in range(n_batches)]  # strided: mixed sizes
    log.debug("jaccard index: %d rows in %d distinct term sets, %d postings", n, G, groups.post.size)
    for queries in progress(batches, desc="neighbours: jaccard top-k (index)", unit="batch", disable=n < 20_000):
        if queries.size:
            _search_groups(queries, min(n_chunks, queries.size), k, groups.size, groups.term_ptr, groups.terms,
                           groups.member_ptr, groups.members, groups.size_start, groups.post_ptr, groups.post,
                           counter_proto, out_row, out_phi, out_len)
    idx = np.full((n, k), -1, dtype=np.int64)
    score = np.full((n, k), np.nan, dtype=np.float64)
    if n:
        _assemble(k, groups.group_of_row, groups.size, groups.member_ptr, groups.members, out_row, out_phi, out_len, idx, score)
    return idx, score
