"""Semantic search: caption neighbours by weighted word2vec attribute vectors (sections 3.2 and 4.1).

For MS-COCO the paper extracts "metadata representations of each image as the weighted sum of the
semantic representations of visual attributes", where the visual attributes are "the most common
256 visual attributes" of the tokenised captions and their representations come from a pretrained
word2vec. The paper does not define an attribute further; here:

- tokens: lower-cased alphabetic runs of every caption (the tokeniser of `pipeline.text.lemmatise`),
  minus gensim's English stop words and tokens shorter than two letters;
- visual attribute: a token whose dominant WordNet part of speech is a noun or an adjective: the
  sense-tagged frequencies (WordNet's lemma counts) of its noun and adjective readings exceed those
  of its verb and adverb readings ("dog", "red", "kitchen" are attributes; "sitting", "holding",
  "riding" are not); a token without tagged frequencies is an attribute when WordNet has a noun or
  adjective reading of it. The attribute is the token's lemma in that part of speech ("dogs" -> dog,
  "larger" -> large); tokens unknown to WordNet are not attributes;
- the `attributes` (paper: 256) attributes found in most images are kept (ties alphabetical); with a
  pretrained word2vec only attributes that have a vector are eligible;
- weights: tf-idf, tf = occurrences of the attribute in the image's captions, idf =
  ln((1 + N) / (1 + df)) + 1 over the N captioned images (common attributes such as "man" weigh
  less than rarer, more telling ones); word vectors are L2-normalised before weighting, so the
  weights alone say how much each attribute counts;
- vectors: gensim KeyedVectors from a user-supplied word2vec file (binary or text, detected from the
  content), or, when none is given, gensim Word2Vec trained on the captions themselves (seeded,
  one worker: deterministic), logged as such. Attribute counts, idf and the trained word2vec use the
  captions of both splits (no labels are involved), as `lemmatise` builds its vocabulary;
- search: cosine similarity, top k among the other images of the same split with FAISS
  (IndexFlatIP on L2-normalised float32 vectors; a GPU index when the run is on CUDA and FAISS has
  GPUs). FAISS
  proposes candidates; each candidate is re-scored in float64 in a fixed summation order, and
  rows whose k-th score is within float32 error of the last proposed one are searched again with
  more candidates, so the result is exact and ties (identical attribute bags) are broken by input
  order, as in the Jaccard search. Images without any kept attribute get no neighbours and are
  nobody's neighbour. Score = cosine similarity.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp
from pipeline.progress import progress

from pipeline.errors import MangoError
from pipeline.neighbours.common import neighbours_frame, topk_per_split, validate
from pipeline.text.attributes import caption_tokens, select_attributes

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Word2Vec trained on the captions when no pretrained file is given.
W2V_DIM, W2V_WINDOW, W2V_EPOCHS, W2V_SEED = 100, 5, 5, 0


# --- word vectors -----------------------------------------------------------------------------------

def _is_binary_word2vec(path: Path) -> bool:
    """True for the binary word2vec format, False for text; both start with a 'count dim' line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise MangoError(f"{path}: not a word2vec file (the first line must be '<words> <dimensions>', "
                             f"got {b' '.join(header)[:60]!r})")
        dim = int(header[1])
        first = f.read(64 * dim + 1024).split(b"\n", 1)[0]  # the first record, up to a newline
    try:
        fields = first.decode("utf-8").split()
        [float(x) for x in fields[1:]]
    except (UnicodeDecodeError, ValueError):
        return True
    return len(fields) != dim + 1


def word2vec_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise MangoError(f"neighbours.word2vec: file not found: '{p}' (a pretrained word2vec file, binary or text; "
                         "or empty to train word2vec on the captions)")
    return p


def load_word2vec(path: str | Path):
    """gensim KeyedVectors from a word2vec file (binary or text, optionally .gz)."""
    from gensim.models import KeyedVectors

    p = word2vec_path(path)
    binary = _is_binary_word2vec(p)
    try:
        kv = KeyedVectors.load_word2vec_format(str(p), binary=binary)
    except Exception as exc:  # gensim raises several types for malformed files
        raise MangoError(f"{p}: not a readable word2vec {'binary' if binary else 'text'} file ({exc})") from exc
    log.info("semantic: loaded %d word vectors of dimension %d from %s (%s format)", len(kv), kv.vector_size, p,
             "binary" if binary else "text")
    return kv


def _stable_hash(text: str) -> int:
    """A hash that is the same in every process (Python's str hash is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(sentences: list[list[str]]):
    """gensim Word2Vec (skip-gram) trained on the caption sentences: seeded, one worker, reproducible."""
    from gensim.models import Word2Vec

    log.warning("semantic: neighbours.word2vec is empty: training gensim Word2Vec on the %d captions "
                "(skip-gram, dimension %d, window %d, %d epochs, seed %d, 1 worker) instead of a pretrained model",
                len(sentences), W2V_DIM, W2V_WINDOW, W2V_EPOCHS, W2V_SEED)
    model = Word2Vec(sentences=sentences, vector_size=W2V_DIM, window=W2V_WINDOW, min_count=1, sg=1,
                     epochs=W2V_EPOCHS, seed=W2V_SEED, workers=1, hashfxn=_stable_hash)
    return model.wv


# --- image vectors ----------------------------------------------------------------------------------

def image_vectors(ids: pl.Series, tokens: pl.DataFrame, chosen: pl.DataFrame, kv, n_images: int) -> np.ndarray:
    """(n, D) float64 tf-idf weighted sums of the unit word vectors of each image's chosen attributes.

    Rows follow `ids`; an image without a chosen attribute gets a zero row.
    """
    attrs = chosen["attribute"].to_list()
    E = np.stack([kv[a] for a in attrs]).astype(np.float64)  # (A, D)
    E /= np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    idf = np.log((1.0 + n_images) / (1.0 + chosen["images"].to_numpy())) + 1.0  # (A,)
    row_of = pl.DataFrame({"image_id": ids}).with_row_index("row")
    tf = (
        tokens.filter(pl.col("attribute").is_in(attrs))
        .group_by("image_id", "attribute").agg(pl.len().alias("tf"))
        .join(row_of, on="image_id")
        .join(pl.DataFrame({"attribute": attrs}).with_row_index("col"), on="attribute")
        .sort("row", "col")  # a fixed summation order: equal attribute bags give bit-equal vectors
    )
    W = sp.csr_matrix((tf["tf"].to_numpy().astype(np.float64) * idf[tf["col"].to_numpy()],
                       (tf["row"].to_numpy(), tf["col"].to_numpy())), shape=(ids.len(), len(attrs)))  # (n, A)
    return np.asarray(W @ E)  # (n, D)


# --- exact cosine top-k -------------------------------------------------------------------------------

def _exact_scores(U: np.ndarray, queries: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """(p, c) float64 inner products U[queries[i]] . U[cand[i, j]], summed in one fixed order.

    Summing along the dimension sequentially (cumsum) makes equal vectors give bit-equal scores
    wherever they sit, so ties are real ties and break by index, not by BLAS blocking.
    """
    out = np.empty(cand.shape, dtype=np.float64)
    step = max(1, 2 ** 22 // max(1, cand.shape[1] * U.shape[1]))  # bound the (rows, c, D) temporary
    for s in range(0, queries.size, step):
        prod = U[queries[s:s + step], None, :] * U[cand[s:s + step]]  # (r, c, D)
        out[s:s + step] = np.cumsum(prod, axis=-1)[..., -1]
    return out


def cosine_topk(V: np.ndarray, k: int, block_size: int = 2048, *, device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of every row of V among its other rows (FAISS + exact re-score).

    V: (n, D) vectors; a zero row has no neighbours and is no candidate. Returns idx (n, k) int64
    and score (n, k) float64 cosine similarities, best first, ties by lower row index, padded with
    -1 / nan. The FAISS index is on the GPU when `device` is CUDA and FAISS has GPUs (CosineIndex).
    """
    from pipeline.neighbours.cosine import CosineIndex

    if k < 1:
        raise MangoError(f"cosine_topk: k must be >= 1, got {k}")
    n, dim = V.shape
    idx = np.full((n, k), -1, dtype=np.int64)
    score = np.full((n, k), np.nan, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    norms = np.linalg.norm(V, axis=1)  # (n,)
    valid = np.flatnonzero(norms > 0)  # (m,) rows with a vector
    m = valid.size
    if m < 2:
        return idx, score
    U = np.ascontiguousarray(V[valid] / norms[valid, None])  # (m, D) float64 unit rows
    U32 = U.astype(np.float32)
    index = CosineIndex(dim, device, f"semantic: cosine top-{k} of {m} vectors (dimension {dim})", normalise=False)
    index.add(U32)
    first_k = min(m, 2 * (k + 1))  # k neighbours + the query itself + as many again, to see past the k-th
    eps = 4 * dim * 2.0 ** -24  # > twice the float32 error of a unit-vector inner product
    starts = range(0, m, block_size)
    retried = 0
    for s in progress(starts, desc="neighbours: semantic top-k", unit="block", disable=len(starts) <= 1):
        pending = np.arange(s, min(s + block_size, m))  # (b,) local rows still to settle
        kk = first_k
        while pending.size:
            sims, cand = index.search(U32[pending], kk)  # (p, kk) float32 scores, local rows, best first
            other = (cand != pending[:, None]) & (cand >= 0)  # (p, kk) proposals that are not the query
            kth = np.sort(np.where(other, sims, -np.inf), axis=1)[:, -min(k, kk - 1)]  # (p,) k-th best proposal
            settled = (kk >= m) | (sims[:, -1] < kth - eps)  # nothing unproposed can reach the k-th
            rows = pending[settled]
            c = np.where(other[settled], cand[settled], rows[:, None])  # self placeholder, masked below
            exact = np.where(other[settled], _exact_scores(U, rows, c), -np.inf)  # (r, kk)
            order = np.lexsort((c, -exact), axis=1)[:, :k]  # by score desc, then lower row
            top_c, top_s = np.take_along_axis(c, order, 1), np.take_along_axis(exact, order, 1)
            found = np.isfinite(top_s)
            g = valid[rows]
            idx[g, :order.shape[1]] = np.where(found, valid[top_c], -1)
            score[g, :order.shape[1]] = np.where(found, top_s, np.nan)
            pending = pending[~settled]
            retried += pending.size  # rows searched again (counted once per extra round)
            kk = min(m, 2 * kk)
    if retried:
        log.info("semantic: %d row searches repeated with more candidates (k-th score tied within float32 error)", retried)
    return idx, score


# --- the stage --------------------------------------------------------------------------------------

def search_semantic(metadata: pl.DataFrame, raw: pl.DataFrame, k: int, *, attributes: int = 256,
                    word2vec: str | Path | None = None, block_size: int = 2048, source: str = "metadata",
                    raw_source: str = "metadata_raw", device: torch.device | None = None) -> pl.DataFrame:
    """Top-k cosine neighbours of every image among its split, by weighted word2vec attribute vectors.

    metadata: image_id, split, terms (the images kept by `lemmatise`; terms are not used here);
    raw: image_id, field, text (metadata_raw.parquet; rows of field 'caption' are read).
    word2vec: a pretrained word2vec file, or None / "" to train one on the captions.
    device: the run's device (a FAISS GPU index when it is CUDA and FAISS has GPUs).
    Returns NEIGHBOURS_SCHEMA rows in input order of image_id, then rank (1-based).
    """
    validate(metadata, k, block_size, source)
    if attributes < 1:
        raise MangoError(f"{source}: attributes must be >= 1, got {attributes}")
    if word2vec:
        word2vec_path(word2vec)  # a missing file fails before the tokenising, a bad one before the (slow) loading
        _is_binary_word2vec(Path(word2vec))
    ct = caption_tokens(metadata, raw, source=raw_source)
    kv = load_word2vec(word2vec) if word2vec else train_word2vec(ct.sentences)
    chosen = select_attributes(ct.tokens, attributes, kv.key_to_index)
    if chosen.height == 0:
        raise MangoError(f"{raw_source}: the captions have no visual attribute with a word vector "
                         f"(nouns or adjectives known to WordNet{' and to ' + str(word2vec) if word2vec else ''})")
    log.info("semantic: %d attributes kept (most common: %s)", chosen.height, ", ".join(chosen["attribute"].head(10).to_list()))
    V = image_vectors(metadata["image_id"], ct.tokens, chosen, kv, ct.images)  # (n, D)
    idx, score = topk_per_split(metadata["split"], k, lambda rows: cosine_topk(V[rows], k, block_size, device=device),
                                describe=lambda rows: f"{int((np.abs(V[rows]).sum(axis=1) == 0).sum())} without a kept attribute")
    return neighbours_frame(metadata["image_id"], idx, score)
