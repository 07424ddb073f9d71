"""KNN label transfer (Makadia, Pavlovic & Kumar, "Baselines for image annotation", IJCV 2010).

Each test image takes the K training images nearest to it in visual feature space and inherits
their labels by vote:

    score_c(i) = sum_k a_k * y_c(n_k(i)),   n_1(i) .. n_K(i) the K most similar TRAINING images,

with a_k = 1/K (plain votes, the default) or a_k proportional to the cosine similarity of n_k(i)
(`weighting: similarity`). Scores are vote shares in [0, 1].

Choices the paper leaves open:
    * Features: the backbone's average-pooled conv features (`ctx.store.pooled`), as the MangoNet
      paper does for every re-implemented baseline ("the hand-crafted features from the original
      models are replaced with the average pooled ... convolutional features"), in place of
      Makadia's combination of colour and texture distances (JEC).
    * Similarity: cosine, i.e. inner product of L2-normalised features (FAISS `IndexFlatIP`, exact
      search; on a CUDA device with a GPU build of FAISS the same flat index runs on the GPU).
    * Transfer: JEC hands on the labels of the nearest neighbours ranked by their frequency among
      the K neighbours; the scored version of that ranking is the per-label vote share, so the
      default is the plain (unweighted) mean of the neighbours' labels, i.e.
      score_c = mean over the K neighbours of their label c. Similarity weighting is offered as
      an alternative (it also breaks the ties that plain vote shares leave in the ranking).
    * K = 10 (`methods.knn.k`): the MangoNet paper does not give K; plain votes take K + 1
      distinct values, so a K much smaller than 10 leaves many tied scores for the ranking metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pipeline.progress import progress

from pipeline.config import method_params
from pipeline.errors import MangoError
from pipeline.neighbours.cosine import CosineIndex
from pipeline.methods import Context, Method, register
from pipeline.features.store import gather

log = logging.getLogger(__name__)

NAME = "knn"
WEIGHTINGS = ("plain", "similarity")


@dataclass
class KNNParams:
    """`methods.knn`: neighbourhood size and vote weighting."""

    k: int = 10  # visual neighbours per test image
    weighting: str = "plain"  # plain (votes, JEC's frequency ranking) | similarity (cosine-weighted votes)
    block_size: int = 4096  # feature rows read, added and searched at a time

    def __post_init__(self) -> None:
        if self.k < 1:
            raise MangoError(f"params: methods.{NAME}.k must be >= 1, got {self.k}")
        if self.weighting not in WEIGHTINGS:
            raise MangoError(f"params: methods.{NAME}.weighting must be one of {', '.join(WEIGHTINGS)}, "
                             f"got '{self.weighting}'")
        if self.block_size < 1:
            raise MangoError(f"params: methods.{NAME}.block_size must be >= 1, got {self.block_size}")


def vote(neighbour_labels: np.ndarray, similarity: np.ndarray, weighting: str = "plain") -> np.ndarray:
    """Label scores (B, C) from the neighbours' 0/1 labels (B, K, C) and their similarities (B, K).

    plain: the mean of the K neighbours' labels. similarity: weights max(s, 0) normalised to sum 1,
    falling back to plain votes for a row whose neighbours all have similarity <= 0.
    """
    b, k, _ = neighbour_labels.shape
    if weighting == "plain":
        a = np.full((b, k), 1.0 / k)  # (B, K)
    else:
        s = np.clip(similarity.astype(np.float64), 0.0, None)  # (B, K)
        total = s.sum(axis=1, keepdims=True)  # (B, 1)
        a = np.where(total > 0, s / np.where(total > 0, total, 1.0), 1.0 / k)  # (B, K)
    return np.einsum("bk,bkc->bc", a, neighbour_labels.astype(np.float64))  # (B, C)


def train(ctx: Context) -> tuple[None, np.ndarray, dict]:
    p = method_params(ctx.params, NAME, KNNParams)
    train_rows, test_rows = ctx.rows("train"), ctx.rows("test")
    if len(train_rows) == 0:
        raise MangoError(f"{NAME}: no training image to take neighbours from (is the training split empty?)")
    k = min(p.k, len(train_rows))
    if k < p.k:
        log.warning("%s: only %d training images, using K = %d instead of methods.%s.k = %d", NAME, k, k, NAME, p.k)
    pooled = ctx.store.pooled
    index = CosineIndex(pooled.shape[1], ctx.device, NAME)  # GPU when FAISS has one and the run is on CUDA
    for start in progress(range(0, len(train_rows), p.block_size), desc=f"{NAME}: index", unit="block", leave=False):
        index.add(gather(pooled, train_rows[start:start + p.block_size]))  # positions = order in train_rows
    train_labels = ctx.targets[train_rows]  # (N_train, C)

    scores = np.zeros((len(test_rows), ctx.targets.shape[1]), dtype=np.float32)  # (N_test, C)
    for start in progress(range(0, len(test_rows), p.block_size), desc=f"{NAME}: search", unit="block", leave=False):
        block = test_rows[start:start + p.block_size]
        sim, pos = index.search(gather(pooled, block), k)  # (B, K) cosine, (B, K) positions in train_rows
        scores[start:start + len(block)] = vote(train_labels[pos], sim, p.weighting)  # (B, K, C) -> (B, C)
    config = {"method": NAME, "k": k, "weighting": p.weighting, "block_size": p.block_size,
              "similarity": "cosine", "features": "pooled"}
    return None, scores, {"config": config, "history": []}


register(Method(NAME, "KNN", stage="baseline", train=train))
