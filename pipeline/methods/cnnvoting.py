"""CNN Voting (Johnson, Ballan & Fei-Fei, "Love thy neighbors", ICCV 2015; section 4.3 here).

The voting baseline over the metadata neighbourhood: an image's label confidence is a weighted sum
of its own Multi-CNN prediction and the mean Multi-CNN prediction of its m metadata neighbours,

    s(i) = (1 - w) * f(i) + w * (1 / |N(i)|) * sum_{j in N(i)} f(j),

f = `ctx.multicnn` (sigmoid scores), N(i) the first m neighbours of `ctx.neighbours` (test images
search the test split, as for MangoNet). Scores stay in [0, 1] for w in [0, 1].

Choices the paper leaves open:
    * The weight w: chosen on a validation split carved from the training rows (a seeded random
      `methods.cnnvoting.val_fraction` of them), as the w in {0, w_step, ..., 1} that maximises
      the validation mAPC (`pipeline.evaluation.metrics.evaluate_scores`); the first (smallest) w wins ties.
      The validation images' neighbours are training images (the neighbour search runs within a
      split), exactly as test images' neighbours are test images. Nothing else is fitted, so the
      rest of the training rows serve only as neighbours. Caveat: Multi-CNN itself was trained on
      all training rows, so its validation scores are in-sample.
    * Missing neighbours (-1) are left out of the mean; an image with no neighbour keeps its own
      Multi-CNN score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.config import method_params
from pipeline.errors import MangoError
from pipeline.methods import Context, Method, register
from pipeline.evaluation.metrics import evaluate_scores

log = logging.getLogger(__name__)

NAME = "cnnvoting"


@dataclass
class CNNVotingParams:
    """`methods.cnnvoting`: how the self/neighbour weight w is chosen."""

    val_fraction: float = 0.2  # share of the training rows that selects w
    w_step: float = 0.05  # grid 0, w_step, ..., 1

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction <= 1.0:
            raise MangoError(f"params: methods.{NAME}.val_fraction must be in (0, 1], got {self.val_fraction}")
        if not 0.0 < self.w_step <= 1.0:
            raise MangoError(f"params: methods.{NAME}.w_step must be in (0, 1], got {self.w_step}")


def neighbour_mean(scores: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Mean score (B, C) of each row's neighbours (B, M) in `scores` (N, C), ignoring -1 entries.

    A row without any neighbour gets nan.
    """
    mask = neighbours >= 0  # (B, M)
    nb = scores[np.where(mask, neighbours, 0)].astype(np.float64)  # (B, M, C)
    total = np.einsum("bm,bmc->bc", mask.astype(np.float64), nb)  # (B, C)
    count = mask.sum(axis=1, keepdims=True)  # (B, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count  # (B, C), nan where count == 0


def vote(own: np.ndarray, neighbour_scores: np.ndarray, w: float) -> np.ndarray:
    """(1 - w) * own + w * neighbour mean, both (B, C); rows whose neighbour mean is nan keep `own`."""
    mixed = (1.0 - w) * own + w * neighbour_scores  # (B, C)
    return np.where(np.isnan(neighbour_scores), own, mixed)


def weight_grid(step: float) -> np.ndarray:
    """0, step, 2 step, ..., 1 (1 always included)."""
    return np.unique(np.append(np.round(np.arange(0.0, 1.0, step), 10), 1.0))


def choose_weight(own: np.ndarray, neighbour_scores: np.ndarray, truth: np.ndarray, labels: list[str],
                  grid: np.ndarray) -> tuple[float, list[dict]]:
    """The w of `grid` with the best mAPC of `vote` against `truth` (first on ties), and the sweep."""
    sweep = []
    for w in grid:
        m = evaluate_scores(vote(own, neighbour_scores, float(w)), truth, labels, source=f"{NAME} validation")
        sweep.append({"w": float(w), "mAPC": m.metrics["mAPC"]})
    best = max(range(len(sweep)), key=lambda i: (sweep[i]["mAPC"], -i))
    return sweep[best]["w"], sweep


def train(ctx: Context) -> tuple[None, np.ndarray, dict]:
    if ctx.multicnn is None or ctx.neighbours is None:
        raise MangoError(f"{NAME}: the context needs the Multi-CNN scores and the metadata neighbours")
    p = method_params(ctx.params, NAME, CNNVotingParams)
    f = ctx.multicnn  # (N, C)
    neighbours = ctx.neighbours[:, :ctx.m]  # (N, M)
    train_rows, test_rows = ctx.rows("train"), ctx.rows("test")
    if len(train_rows) == 0:
        raise MangoError(f"{NAME}: no training image to choose w on (is the training split empty?)")
    n_val = min(len(train_rows), max(1, round(p.val_fraction * len(train_rows))))
    val_rows = np.sort(np.random.default_rng(ctx.params.seed).permutation(train_rows)[:n_val])
    truth = ctx.targets[val_rows]
    if not truth.any():
        raise MangoError(f"{NAME}: the {n_val} validation images (methods.{NAME}.val_fraction = {p.val_fraction}) "
                         f"have no positive label; raise val_fraction")
    w, sweep = choose_weight(f[val_rows], neighbour_mean(f, neighbours[val_rows]), truth, ctx.store.labels,
                             weight_grid(p.w_step))
    log.info("%s: w = %.2f (validation mAPC %.4f on %d images; w = 0: %.4f)", NAME, w,
             max(s["mAPC"] for s in sweep), n_val, sweep[0]["mAPC"])
    scores = vote(f[test_rows], neighbour_mean(f, neighbours[test_rows]), w).astype(np.float32)  # (N_test, C)
    config = {"method": NAME, "m": ctx.m, "w": w, "val_fraction": p.val_fraction, "w_step": p.w_step,
              "n_val": int(n_val), "seed": ctx.params.seed, "validation": sweep}
    return None, scores, {"config": config, "history": []}


register(Method(NAME, "CNN Voting", stage="nbr_baseline", uses_neighbours=True, train=train))
