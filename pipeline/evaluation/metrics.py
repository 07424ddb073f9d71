"""The one evaluator used by every method: mAPC, mAPO and the top-k threshold metrics.

Notation: N images, C labels; `scores` (N, C) are any monotone scores (probabilities for the
thresholded metrics), `truth` (N, C) is 0/1.

Ranking metrics
    average_precision  Non-interpolated AP with exactly scikit-learn's `average_precision_score`
                       semantics: rank by score, descending; tied scores form ONE threshold, so a
                       tie group enters the sum once, with the precision at its end:
                       AP = sum_n (R_n - R_{n-1}) * P_n over distinct scores n (R_0 = 0).
                       No positive: nan (undefined).
    mAPC               Mean over labels with at least one positive of the per-label AP (label-wise,
                       down the N images of one column).
    mAPO               AP of the flattened (N*C) scores against the flattened truth. Every label
                       takes part, including those without a positive (their cells are negatives).

Threshold metrics (ML-GCN's `overall_topk(3)`, Chen et al. CVPR 2019)
    For each image, take its `top_k` labels by score (ties broken by the lower label index, so the
    result is deterministic) and predict those of them with score >= `threshold`. ML-GCN thresholds
    logits at >= 0, which is probability >= 0.5, hence the default 0.5; a score exactly equal to the
    threshold is predicted. An image with no top-k score >= threshold predicts nothing.
    Per label c: Nc = correct predictions, Np = predictions, Ng = positives.
    OP = sum_c Nc / sum_c Np, OR = sum_c Nc / sum_c Ng, OF1 = 2 OP OR / (OP + OR); the sums run
    over ALL labels (predicting a label that has no positive is a false positive).
    CP = mean_c Nc / Np, CR = mean_c Nc / Ng, CF1 = 2 CP CR / (CP + CR); the means run over the
    labels with at least one positive only.

Edge cases
    * A label with no positive in the truth is excluded from mAPC, CP and CR (its AP and recall are
      undefined); its `per_label_ap` is None and a note says so. It still counts in mAPO, OP, OR.
    * A label never predicted has precision 0 in CP (ML-GCN sets Np = 1, which gives Nc/Np = 0).
    * OP with no prediction at all is 0. Any F1 whose P + R is 0 is 0.
    * Deviation from ML-GCN: its `Np[Np == 0] = 1` also adds 1 to OP's denominator for every
      never-predicted label; here OP uses the true prediction count. ML-GCN also averages CR over
      every label, which is nan when one has no positive; here such labels are excluded.
    * `top_k` larger than C means all labels.
    * Input that cannot be scored raises MangoError: shapes that differ, NaN/inf scores (naming the
      row and label), truth other than 0/1, no label with a positive at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.errors import MangoError
from pipeline.io import read_parquet



@dataclass
class Evaluation:
    """The eight metrics of one predictions matrix, with per-label AP and human-readable notes."""

    metrics: dict[str, float]  # exactly METRIC_KEYS, each in [0, 1]
    per_label_ap: dict[str, float | None]  # None for labels without a positive
    excluded_labels: list[str]  # no positive in the truth: excluded from mAPC, CP, CR
    n_images: int
    n_labels: int
    notes: list[str] = field(default_factory=list)


def _average_precision_columns(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """AP of each column, sklearn tie semantics; nan where a column has no positive. (N, C) -> (C,)."""
    n = scores.shape[0]
    order = np.argsort(-scores, axis=0, kind="stable")  # (N, C) rows by descending score
    s = np.take_along_axis(scores, order, axis=0)  # (N, C)
    t = np.take_along_axis(truth, order, axis=0).astype(np.float64)  # (N, C)
    tp = np.cumsum(t, axis=0)  # (N, C) true positives among the first i+1 rows
    # A row ends its tie group if the next score differs (or it is last); every row of a group is
    # scored with the precision at the group's end, which is sklearn's one threshold per score.
    is_end = np.ones_like(s, dtype=bool)  # (N, C)
    is_end[:-1] = s[1:] != s[:-1]
    rows = np.arange(n)[:, None]  # (N, 1)
    end = np.where(is_end, rows, n)  # (N, C)
    end = np.minimum.accumulate(end[::-1], axis=0)[::-1]  # (N, C) index of each row's group end
    precision_at_end = np.take_along_axis(tp, end, axis=0) / (end + 1)  # (N, C)
    n_pos = tp[-1]  # (C,)
    # sum_n (R_n - R_{n-1}) P_n = sum over positives of P at their group's end, / n_pos.
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (t * precision_at_end).sum(axis=0) / n_pos  # (C,)
    return np.where(n_pos > 0, ap, np.nan)


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Non-interpolated AP of one ranking, as sklearn's `average_precision_score`; nan without positives."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(truth).ravel()
    if scores.shape != truth.shape:
        raise MangoError(f"average_precision: {scores.size} scores but {truth.size} truth values")
    if scores.size == 0:
        return float("nan")
    return float(_average_precision_columns(scores[:, None], truth[:, None])[0])


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def topk_predictions(scores: np.ndarray, top_k: int, threshold: float) -> np.ndarray:
    """(N, C) bool: each image's top_k labels (ties -> lower label index) with score >= threshold."""
    n, c = scores.shape
    k = min(top_k, c)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k) label indices
    pred = np.zeros((n, c), dtype=bool)
    np.put_along_axis(pred, top, np.take_along_axis(scores, top, axis=1) >= threshold, axis=1)
    return pred


def _validate(scores: np.ndarray, truth: np.ndarray, labels: Sequence[str], top_k: int, threshold: float,
              row_names: Sequence[str] | None, source: str) -> None:
    def row(i: int) -> str:
        return f"image '{row_names[i]}'" if row_names is not None else f"row {i}"

    if scores.ndim != 2:
        raise MangoError(f"{source}: scores must be a 2-D (images, labels) array, got shape {scores.shape}")
    if truth.shape != scores.shape:
        raise MangoError(f"{source}: scores have shape {scores.shape} but truth has shape {truth.shape}")
    if len(labels) != scores.shape[1]:
        raise MangoError(f"{source}: {len(labels)} label names for {scores.shape[1]} score columns")
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if list(labels).count(x) > 1)
        raise MangoError(f"{source}: label '{dup}' appears more than once")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise MangoError(f"{source}: nothing to evaluate ({scores.shape[0]} images, {scores.shape[1]} labels)")
    if top_k < 1:
        raise MangoError(f"{source}: top_k must be >= 1, got {top_k}")
    if not np.isfinite(threshold):
        raise MangoError(f"{source}: threshold must be a finite number, got {threshold}")
    bad = np.argwhere(~np.isfinite(scores))
    if len(bad):
        i, j = bad[0]
        raise MangoError(f"{source}: score for {row(i)}, label '{labels[j]}' is {scores[i, j]}; "
                         f"expected a finite number ({len(bad)} such value(s))")
    bad = np.argwhere((truth != 0) & (truth != 1))
    if len(bad):
        i, j = bad[0]
        raise MangoError(f"{source}: truth for {row(i)}, label '{labels[j]}' is {truth[i, j]}; expected 0 or 1")
    if not truth.any():
        raise MangoError(f"{source}: no label has a positive image in the truth; nothing can be evaluated")


def evaluate_scores(scores: np.ndarray, truth: np.ndarray, labels: Sequence[str], top_k: int = 3,
                    threshold: float = 0.5, *, row_names: Sequence[str] | None = None,
                    source: str = "evaluate") -> Evaluation:
    """The eight metrics of `scores` (N, C) against 0/1 `truth` (N, C); see the module docstring.

    `row_names` (e.g. image ids) and `source` (e.g. a file name) only make error messages precise.
    """
    try:
        scores = np.asarray(scores, dtype=np.float64)
        truth = np.asarray(truth, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MangoError(f"{source}: scores and truth must be numeric arrays ({exc})") from exc
    labels = list(labels)
    _validate(scores, truth, labels, top_k, threshold, row_names, source)
    n, c = scores.shape

    ap = _average_precision_columns(scores, truth)  # (C,) nan where no positive
    included = truth.sum(axis=0) > 0  # (C,)
    excluded = [labels[j] for j in np.flatnonzero(~included)]
    map_c = float(ap[included].mean())
    map_o = float(_average_precision_columns(scores.reshape(-1, 1), truth.reshape(-1, 1))[0])

    pred = topk_predictions(scores, top_k, threshold)  # (N, C) bool
    pos = truth.astype(bool)
    n_c = (pred & pos).sum(axis=0)  # (C,)
    n_p = pred.sum(axis=0)  # (C,)
    n_g = pos.sum(axis=0)  # (C,)
    op = float(n_c.sum() / n_p.sum()) if n_p.sum() else 0.0
    orec = float(n_c.sum() / n_g.sum())
    cp = float(np.mean(np.divide(n_c, n_p, out=np.zeros(c), where=n_p > 0)[included]))
    cr = float(np.mean(n_c[included] / n_g[included]))

    metrics = {"mAPC": map_c, "mAPO": map_o, "CP": cp, "CR": cr, "CF1": _f1(cp, cr),
               "OP": op, "OR": orec, "OF1": _f1(op, orec)}
    notes = [f"label '{name}' has no positive image in the test split: excluded from mAPC, CP and CR"
             for name in excluded]
    never = [labels[j] for j in np.flatnonzero(included & (n_p == 0))]
    if never:
        notes.append(f"{len(never)} label(s) never predicted (no top-{top_k} score >= {threshold}), "
                     f"precision 0 in CP: {', '.join(never)}")
    empty = int((~pred.any(axis=1)).sum())
    if empty:
        notes.append(f"{empty} of {n} image(s) have no top-{top_k} score >= {threshold} and predict no label")
    per_label = {name: (None if np.isnan(v) else float(v)) for name, v in zip(labels, ap)}
    return Evaluation(metrics=metrics, per_label_ap=per_label, excluded_labels=excluded,
                      n_images=n, n_labels=c, notes=notes)


def _name_some(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{x}'" for x in ids[:limit])
    return f"{len(ids)} image id(s): {shown}" + (", ..." if len(ids) > limit else "")


def _load_table(path: Path, role: str) -> pl.DataFrame:
    """The table with a unique, non-null String `image_id` column and numeric label columns."""
    df = read_parquet(path, {"image_id": pl.String})
    if df.height == 0:
        raise MangoError(f"{path}: the {role} file has no rows")
    ids = df["image_id"]
    if ids.null_count():
        raise MangoError(f"{path}: column 'image_id' is null in row {ids.is_null().arg_max()}")
    dup = ids.filter(ids.is_duplicated())
    if len(dup):
        raise MangoError(f"{path}: image_id '{dup[0]}' appears more than once ({dup.n_unique()} duplicated id(s))")
    for name, dtype in df.schema.items():
        if name == "image_id":
            continue
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            raise MangoError(f"{path}: label column '{name}' has type {dtype}, expected numbers in the {role} file")
        col = df[name]
        if col.null_count():
            row = int(col.is_null().arg_max())
            raise MangoError(f"{path}: column '{name}' is null for image '{ids[row]}'; expected a value")
    return df


def evaluate_files(predictions_path: str | Path, truth_path: str | Path, top_k: int = 3,
                   threshold: float = 0.5) -> Evaluation:
    """Evaluate a predictions Parquet (image_id + a score per label) against a truth Parquet
    (image_id + a 0/1 or boolean per label). Rows align by image_id in truth order, columns in
    truth's label order; both files must hold the same image ids and the same label columns.
    """
    pred_path, truth_path = Path(predictions_path), Path(truth_path)
    truth_df = _load_table(truth_path, "truth")
    pred_df = _load_table(pred_path, "predictions")

    labels = [c for c in truth_df.columns if c != "image_id"]
    pred_labels = [c for c in pred_df.columns if c != "image_id"]
    if not labels:
        raise MangoError(f"{truth_path}: no label columns besides 'image_id'")
    missing = [c for c in labels if c not in pred_labels]
    extra = [c for c in pred_labels if c not in labels]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing label column(s) {', '.join(missing)} (present in {truth_path})")
        if extra:
            parts.append(f"extra column(s) {', '.join(extra)} (not in {truth_path})")
        raise MangoError(f"{pred_path}: label columns differ from the truth: " + "; ".join(parts))

    truth_ids = truth_df["image_id"].to_list()
    pred_ids = set(pred_df["image_id"].to_list())
    not_scored = [x for x in truth_ids if x not in pred_ids]
    if not_scored:
        raise MangoError(f"{pred_path}: no scores for {_name_some(not_scored)} that are in {truth_path}")
    truth_set = set(truth_ids)
    unknown = [x for x in pred_df["image_id"].to_list() if x not in truth_set]
    if unknown:
        raise MangoError(f"{pred_path}: scores {_name_some(unknown)} that are not in {truth_path}")

    row_of = {x: i for i, x in enumerate(pred_df["image_id"].to_list())}
    order = np.array([row_of[x] for x in truth_ids], dtype=np.int64)  # (N,) predictions row per truth row
    scores = pred_df.select(labels).cast(pl.Float64).to_numpy()[order]  # (N, C)
    truth = truth_df.select(labels).cast(pl.Float64).to_numpy()  # (N, C)
    ids = truth_ids
    bad = np.argwhere(~np.isfinite(scores))
    if len(bad):  # same check as evaluate_scores, but naming the file
        i, j = bad[0]
        raise MangoError(f"{pred_path}: score for image '{ids[i]}', label '{labels[j]}' is {scores[i, j]}; "
                         f"expected a finite number ({len(bad)} such value(s))")
    return evaluate_scores(scores, truth, labels, top_k=top_k, threshold=threshold, row_names=ids,
                           source=str(truth_path))
