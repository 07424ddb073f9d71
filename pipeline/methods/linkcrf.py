"""Link-CRF [22]: a pairwise CRF over the metadata graph, on top of the Multi-CNN scores.

McAuley and Leskovec, "Image labeling on a network: using social-network metadata for image
classification", ECCV 2012. Images are the nodes of a graph whose edges link images with shared
metadata; each label c is a binary CRF of its own, with a unary potential from the image's own
classifier and a pairwise potential rewarding linked images that agree on the label. Here:

    unary     a_c * u_ic + b_c,          u_ic = logit(Multi-CNN score of image i, label c)
    pairwise  w_c * s_ij * [y_ic == y_jc] for j in i's metadata neighbours (ctx.neighbours),
              s_ij their Jaccard score (ctx.neighbour_scores)

Inference is mean-field for T iterations (`methods.linkcrf.iterations`), synchronous updates
from q_i = sigmoid(a_c u_ic + b_c):

    q_ic <- sigmoid(a_c * u_ic + b_c + w_c * sum_j s_ij * (2 q_jc - 1))

and a_c, b_c, w_c (3C numbers) minimise the BCE of the final marginals on training rows, with the
mean-field unrolled and differentiated, through `pipeline.training.loop.fit`.

Batches and the graph: a row's marginal after T steps depends on its T-hop neighbourhood, so
each training step runs the mean-field over the whole split's graph (the training rows with
their training neighbours: N x m edges, microseconds) and takes the loss on the batch's rows
only; prediction runs it once over the test rows with their test neighbours. This is exact
mean-field, unlike unrolling on a batch with the neighbours' q frozen at their unaries.

What differs from the original:
- Learning: the original trains the CRF parameters with a structured SVM (max-margin) and uses
  graph-cut/MAP inference; here the likelihood-style BCE of unrolled mean-field marginals, which
  gives graded scores for the ranking metrics and shares the one training loop.
- Edges: the original weights each edge by a learned combination of several metadata relations
  (shared tags, groups, collections, same user, ...) as edge features; here one relation, the
  Jaccard similarity of the metadata term sets, with a per-label weight w_c.
- Unary: the original's node features are hand-crafted image and text features with a learned
  linear classifier; here the Multi-CNN score (section 4.3 replaces hand-crafted features with the
  shared finetuned backbone), recalibrated per label by a_c, b_c.
- The graph is the directed metadata-neighbourhood graph of the other methods (i's first m
  neighbours), not a symmetric graph; training rows' Multi-CNN scores are in-sample.
- Start: a = 1, b = 0, w = 0, i.e. exactly the Multi-CNN scores; weight decay defaults to 0.

Shapes: legend N rows of the split, M neighbours, C labels, B batch.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.config import TrainParams, method_params
from pipeline.errors import MangoError
from pipeline.methods import Context, Method, register
from pipeline.training.loop import fit_and_predict

log = logging.getLogger(__name__)


@dataclass
class LinkCRFParams(TrainParams):
    """`methods.linkcrf` in params.yaml."""

    iterations: int = 5  # mean-field iterations T
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.5
    weight_decay: float = 0.0
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        self.validate("methods.linkcrf")
        if self.iterations < 1:
            raise MangoError(f"params: methods.linkcrf.iterations must be >= 1, got {self.iterations}")


def split_graph(neighbours: np.ndarray, scores: np.ndarray, rows: np.ndarray, n: int,
                split: str) -> tuple[np.ndarray, np.ndarray]:
    """The graph of one split in split-local positions: (Ns, M) neighbour positions into `rows`
    (a missing neighbour points at the row itself, with weight 0) and (Ns, M) edge weights."""
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    nb = neighbours[rows]  # (Ns, M) store rows, -1 missing
    present = nb >= 0
    local = np.where(present, pos[np.where(present, nb, 0)], -1)  # (Ns, M)
    outside = present & (local < 0)
    if outside.any():
        i, j = np.argwhere(outside)[0]
        raise MangoError(f"linkcrf: {split} row {rows[i]} has neighbour row {nb[i, j]} outside the {split} split; "
                         f"neighbours must come from the image's own split")
    weight = np.where(present, np.nan_to_num(scores[rows], nan=0.0), 0.0).astype(np.float32)  # (Ns, M)
    local = np.where(present, local, np.arange(len(rows))[:, None])  # (Ns, M)
    return local, weight


def unary_logits(probs: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """logit of the Multi-CNN scores, clipped away from 0 and 1."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p)).astype(np.float32)


class LinkCRF(nn.Module):
    """Per-label pairwise CRF over a graph, mean-field for `iterations` steps (unrolled).

    Shapes: u (N, C) unary logits, nb (N, M) neighbour positions, s (N, M) edge weights,
    idx (B,) rows to return -> logits (B, C) of the final marginals.
    """

    def __init__(self, n_labels: int, iterations: int = 5):
        super().__init__()
        self.iterations = iterations
        self.a = nn.Parameter(torch.ones(n_labels))  # (C,) unary scale
        self.b = nn.Parameter(torch.zeros(n_labels))  # (C,) unary bias
        self.w = nn.Parameter(torch.zeros(n_labels))  # (C,) pairwise agreement weight

    def forward(self, u: torch.Tensor, nb: torch.Tensor, s: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        u, s = u.float(), s.float()
        h = self.a * u + self.b  # (N, C)
        logit = h
        for _ in range(self.iterations):
            spin = 2 * torch.sigmoid(logit) - 1  # (N, C) expected +-1 label of each node
            msg = (s.unsqueeze(-1) * spin[nb]).sum(1)  # (N, M, C) -> (N, C): sum_j s_ij (2 q_j - 1)
            logit = h + self.w * msg  # (N, C)
        return logit[idx]  # (B, C)


def graph_inputs(ctx: Context, rows: np.ndarray, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u (Ns, C), nb (Ns, M), s (Ns, M) of one split's graph."""
    nb, s = split_graph(ctx.neighbours[:, :ctx.m], ctx.neighbour_scores[:, :ctx.m], rows, len(ctx.targets), split)
    return torch.from_numpy(unary_logits(ctx.multicnn[rows])), torch.from_numpy(nb), torch.from_numpy(s)


def train(ctx: Context) -> tuple[LinkCRF, np.ndarray, dict]:
    p = method_params(ctx.params, "linkcrf", LinkCRFParams)
    if ctx.multicnn is None or ctx.neighbours is None or ctx.neighbour_scores is None:
        raise MangoError("linkcrf needs the Multi-CNN scores and the metadata neighbours with their scores")
    train_rows, test_rows = ctx.rows("train"), ctx.rows("test")
    graph = graph_inputs(ctx, train_rows, "train")
    labels = torch.from_numpy(ctx.targets[train_rows].astype(np.float32))  # (Nt, C)
    torch.manual_seed(ctx.params.seed)
    model = LinkCRF(labels.shape[1], p.iterations)
    own = np.arange(len(train_rows))

    test_graph = graph_inputs(ctx, test_rows, "test")
    scores, history = fit_and_predict(model, "linkcrf", p, ctx.device, seed=ctx.params.seed, train_rows=own,
                                      train_inputs=lambda pos: (*graph, torch.from_numpy(pos)), targets=labels,
                                      test_rows=np.arange(len(test_rows)), test_inputs=lambda pos: (*test_graph, torch.from_numpy(pos)),
                                      live_dir=ctx.live_dir, predict_batch_size=max(1, len(test_rows)))  # one batch: the whole graph
    learned = {k: v.detach().cpu().tolist() for k, v in model.state_dict().items()}
    config = {"method": "linkcrf", "m": ctx.m, **dataclasses.asdict(p), "learned": learned}
    return model, scores, {"config": config, "history": history}


register(Method("linkcrf", "Link-CRF", stage="nbr_baseline", uses_neighbours=True, train=train))
