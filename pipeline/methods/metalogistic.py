"""Meta+Logistic (Johnson, Ballan & Fei-Fei, "Love thy neighbors", ICCV 2015; section 4.3 here).

The metadata-only baseline: each image is its binary |T|-dim term vector t (1 where the image
carries vocabulary term j, from `ctx.metadata`), and each label c has its own logistic regression
p(c | t) = sigmoid(w_c . t + b_c), trained with the logistic loss on the training rows. The C
regressions share nothing, so they are one `nn.Linear(|T|, C)` trained with the one loop
`pipeline.training.loop.fit` (its multi-label BCE on the logits is exactly the per-label logistic loss).

Choices the paper leaves open:
    * Optimiser: SGD with momentum from `methods.metalogistic` (the loop every trainer shares),
      with a small L2 penalty (weight_decay) as the usual regulariser of logistic regression.
      Johnson et al. do not state theirs; the problem is convex, so any converged solver agrees.
    * The term vector is binary and unnormalised, as the paper describes it ("the binary vector
      with the metadata vocabulary size |T|-dimension").
    * An image without any vocabulary term has t = 0: it gets the bias alone, i.e. the learnt
      label prior.
The term matrix stays sparse (CSR); each mini-batch densifies only its own rows.
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

NAME = "metalogistic"


@dataclass
class MetaLogisticParams(TrainParams):
    """`methods.metalogistic`: SGD settings of the per-label logistic regressions."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.2  # binary sparse inputs and a convex loss tolerate a large step
    weight_decay: float = 1e-4  # L2 penalty on w (and b)

    def __post_init__(self) -> None:
        self.validate(f"methods.{NAME}")


def term_batch(metadata, rows: np.ndarray) -> tuple[torch.Tensor]:
    """Dense binary term vectors (B, |T|) of `rows`, densified from the CSR matrix for this batch only."""
    return (torch.from_numpy(metadata[rows].toarray().astype(np.float32)),)  # (B, |T|)


def train(ctx: Context) -> tuple[nn.Module, np.ndarray, dict]:
    if ctx.metadata is None:
        raise MangoError(f"{NAME}: the context holds no term matrix (the method reads the metadata)")
    p = method_params(ctx.params, NAME, MetaLogisticParams)
    seed, n_labels = ctx.params.seed, ctx.targets.shape[1]
    metadata = ctx.metadata.tocsr()
    train_rows, test_rows = ctx.rows("train"), ctx.rows("test")
    log.info("%s: %d training images, |T| = %d terms, %d labels", NAME, len(train_rows), metadata.shape[1], n_labels)

    torch.manual_seed(seed)
    model = nn.Linear(metadata.shape[1], n_labels)  # (B, |T|) -> (B, C) logits, one regression per label

    scores, history = fit_and_predict(model, NAME, p, ctx.device, seed=seed, train_rows=train_rows,
                                      train_inputs=lambda idx: term_batch(metadata, idx), targets=ctx.targets,
                                      test_rows=test_rows, live_dir=ctx.live_dir, predict_batch_size=1024)
    config = {"method": NAME, "vocab_size": int(metadata.shape[1]), **dataclasses.asdict(p)}
    return model, scores, {"config": config, "history": history}


register(Method(NAME, "Meta+Logistic", stage="baseline", uses_metadata=True, train=train))
