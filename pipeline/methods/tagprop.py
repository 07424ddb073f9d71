"""TagProp [8]: a trained nearest-neighbour model over visual neighbours in the training set.

Guillaumin, Mensink, Verbeek and Schmid, "TagProp: discriminative metric learning in nearest
neighbour models for image auto-annotation", ICCV 2009. Each image i takes its K visual nearest
neighbours j among the training images (cosine similarity of the L2-normalised pooled features,
exact search with a FAISS IndexFlatIP; a training image never counts itself) and predicts

    x_ic = sum_j pi_ij * y_jc                         (weighted vote of the neighbours' labels)
    p(y_ic = 1) = sigmoid(alpha_c * x_ic + beta_c)    (the per-label "word-specific" sigmoid)

with either of the original's two weightings (`methods.tagprop.weights`):

    rank:      pi_ij = gamma_k for the k-th neighbour,  gamma = softmax(g)  (K learned weights)
    distance:  pi_ij = softmax_j(-theta * d_ij),         d_ij = 1 - cos(f_i, f_j), theta > 0 learned

All parameters maximise the log-likelihood of the training labels, i.e. minimise BCE, with
mini-batches of training rows through `pipeline.training.loop.fit` (their K training neighbours are found
once with FAISS, before training).

What differs from the original, and the choices the paper leaves open:
- Features: the pooled backbone feature with the cosine distance (section 4.3 replaces the
  original's hand-crafted features with the pooled CNN feature); the original's metric learning
  over several base distances, d_w = w^T d_ij, reduces to one weight theta on one distance.
- theta is parametrised as exp(log_theta) to keep it positive; it starts at
  1 / mean_i(d_iK - d_i1) so that at the start the nearest neighbour weighs about e times the
  K-th (a scale-free start: cosine distances of CNN features are close to one another).
- alpha_c = 1, beta_c = 0 at the start; the original optimises with projected gradient (alpha >= 0)
  on the full training set, here SGD on mini-batches like every other trainer (no projection: a
  negative alpha_c would only flip a label's ranking, which the likelihood penalises).
- K = 20 (methods.tagprop.k), the middle of the original's range (it used up to K = 200 with
  its much larger training sets); weight decay defaults to 0 since alpha must grow freely.

Shapes: legend B batch, K neighbours, C labels, D channels, N rows.
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
from pipeline.neighbours.cosine import CosineIndex
from pipeline.methods import Context, Method, register
from pipeline.training.loop import fit_and_predict

log = logging.getLogger(__name__)

WEIGHTS = ("rank", "distance")


@dataclass
class TagPropParams(TrainParams):
    """`methods.tagprop` in params.yaml."""

    k: int = 20  # visual neighbours in the training set
    weights: str = "distance"  # rank (learned gamma_k) | distance (softmax of -theta * d_ij)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 4.0  # few parameters and a flat start (alpha = 1): a large step converges within 30 epochs
    weight_decay: float = 0.0
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        self.validate("methods.tagprop")
        if self.k < 1:
            raise MangoError(f"params: methods.tagprop.k must be >= 1, got {self.k}")
        if self.weights not in WEIGHTS:
            raise MangoError(f"params: methods.tagprop.weights must be one of {', '.join(WEIGHTS)}, got '{self.weights}'")


def visual_neighbours(base: np.ndarray, query: np.ndarray, k: int, exclude: np.ndarray | None = None,
                      device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `base` (Nb, D) to each row of `query` (Nq, D) by cosine similarity.

    Returns (Nq, k) positions into `base` (nearest first) and their (Nq, k) distances 1 - cos.
    `exclude` (Nq,) gives, per query, a base position that must not be returned (the query itself
    when it is in the base), or -1. Needs Nb >= k (+1 when excluding). On a CUDA `device` the
    search runs on its GPU when FAISS has GPUs (exact, like the CPU index).
    """
    extra = int(exclude is not None)
    if len(base) < k + extra:
        raise MangoError(f"tagprop: {len(base)} training images cannot give k = {k} neighbours"
                         f"{' besides the image itself' if extra else ''}; lower methods.tagprop.k")
    index = CosineIndex(base.shape[1], device, "tagprop")
    index.add(base)
    sim, pos = index.search(query, k + extra)  # (Nq, k + extra)
    if exclude is not None:
        keep = pos != exclude[:, None]  # (Nq, k + 1)
        keep[keep.all(axis=1), -1] = False  # the query was not among its own hits (ties): drop the last
        pos = pos[keep].reshape(len(query), k)  # (Nq, k)
        sim = sim[keep].reshape(len(query), k)  # (Nq, k)
    return pos.astype(np.int64), (1.0 - sim).astype(np.float32)


class TagProp(nn.Module):
    """x_ic = sum_j pi_ij y_jc; logit = alpha_c x_ic + beta_c, with rank- or distance-based pi.

    Shapes: y (B, K, C) neighbours' labels, d (B, K) distances -> logits (B, C).
    """

    def __init__(self, k: int, n_labels: int, weights: str = "distance", theta: float = 1.0):
        super().__init__()
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got '{weights}'")
        self.weights = weights
        self.alpha = nn.Parameter(torch.ones(n_labels))  # (C,)
        self.beta = nn.Parameter(torch.zeros(n_labels))  # (C,)
        if weights == "rank":
            self.gamma = nn.Parameter(torch.zeros(k))  # (K,) logits of gamma_k, uniform at the start
        else:
            self.log_theta = nn.Parameter(torch.tensor(float(np.log(theta))))

    def neighbour_weights(self, d: torch.Tensor) -> torch.Tensor:
        """pi (B, K), each row summing to 1."""
        if self.weights == "rank":
            return self.gamma.softmax(-1).expand_as(d)  # (B, K)
        return (-self.log_theta.exp() * d).softmax(-1)  # (B, K)

    def forward(self, y: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        pi = self.neighbour_weights(d.float())  # (B, K)
        x = torch.einsum("bk,bkc->bc", pi, y.float())  # (B, C)
        return self.alpha * x + self.beta  # (B, C)


def train(ctx: Context) -> tuple[TagProp, np.ndarray, dict]:
    p = method_params(ctx.params, "tagprop", TagPropParams)
    train_rows, test_rows = ctx.rows("train"), ctx.rows("test")
    feats = ctx.store.pooled
    base = np.asarray(feats[train_rows])  # (Nt, D)
    own = np.arange(len(train_rows))
    nb_train, d_train = visual_neighbours(base, base, p.k, exclude=own, device=ctx.device)  # (Nt, K) positions in train_rows
    nb_test, d_test = visual_neighbours(base, np.asarray(feats[test_rows]), p.k, device=ctx.device)  # (Ns, K)
    log.info("tagprop: %d-NN of %d train and %d test images among the training images",
             p.k, len(train_rows), len(test_rows))
    labels = ctx.targets[train_rows].astype(np.float32)  # (Nt, C) only training labels are read

    def inputs(nb: np.ndarray, d: np.ndarray, pos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(labels[nb[pos]]), torch.from_numpy(d[pos])  # (B, K, C), (B, K)

    spread = float(np.mean(d_train[:, -1] - d_train[:, 0]))
    theta0 = 1.0 / spread if spread > 1e-6 else 1.0
    torch.manual_seed(ctx.params.seed)
    model = TagProp(p.k, labels.shape[1], p.weights, theta0)

    scores, history = fit_and_predict(model, "tagprop", p, ctx.device, seed=ctx.params.seed, train_rows=own,
                                      train_inputs=lambda pos: inputs(nb_train, d_train, pos), targets=labels,
                                      test_rows=np.arange(len(test_rows)), test_inputs=lambda pos: inputs(nb_test, d_test, pos),
                                      live_dir=ctx.live_dir, predict_batch_size=1024)
    config = {"method": "tagprop", **dataclasses.asdict(p), "theta_init": theta0}
    if p.weights == "distance":
        config["theta"] = float(model.log_theta.detach().exp())
    return model, scores, {"config": config, "history": history}


register(Method("tagprop", "TagProp", stage="baseline", train=train))
