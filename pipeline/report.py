"""Score every method's predictions with the one evaluator; write metrics, tables and details."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data import Annotated
from pipeline.errors import MangoError
from pipeline.io import read_parquet
from pipeline.methods import all_methods
from pipeline.metrics import METRIC_KEYS, evaluate_scores

log = logging.getLogger(__name__)


def label_prior_scores(data: Annotated) -> np.ndarray:
    """The label-frequency baseline: every test image scored by the labels' training frequency."""
    freq = data.targets[data.select("train")].mean(axis=0)  # (C,)
    return np.tile(freq, (len(data.select("test")), 1))


def score_predictions(data: Annotated, files: list[Path], top_k: int, threshold: float) -> tuple[dict, dict]:
    """(metrics by method title, details) for each predictions file, named predictions/<method>.parquet."""
    methods = all_methods()
    test = data.select("test")
    truth = data.targets[test]
    test_ids = [data.image_ids[i] for i in test]
    metrics, details = {}, {}
    for path in files:
        name = Path(path).stem
        if name not in methods:
            raise MangoError(f"{path}: no registered method named '{name}' (known: {', '.join(methods)})")
        pred = read_parquet(path, {"image_id": pl.String})
        missing = [c for c in data.label_names if c not in pred.columns]
        if missing:
            raise MangoError(f"{path}: missing label column(s) {', '.join(missing)}")
        aligned = pl.DataFrame({"image_id": test_ids}).join(pred, on="image_id", how="left")
        if aligned.select(data.label_names).null_count().sum_horizontal().item():
            raise MangoError(f"{path}: does not score every test image ({len(test_ids)} expected, {pred.height} rows)")
        scores = aligned.select(data.label_names).to_numpy().astype(np.float64)
        ev = evaluate_scores(scores, truth, data.label_names, top_k=top_k, threshold=threshold)
        title = methods[name].title
        metrics[title] = {k: round(float(ev.metrics[k]), 4) for k in METRIC_KEYS}
        details[title] = {"method": name, "predictions": str(path), "per_label_ap": ev.per_label_ap,
                          "excluded_labels": ev.excluded_labels, "notes": ev.notes}
        log.info("%-12s mAPC %.3f  mAPO %.3f  CF1 %.3f  OF1 %.3f", title, ev.metrics["mAPC"], ev.metrics["mAPO"],
                 ev.metrics["CF1"], ev.metrics["OF1"])
    prior = evaluate_scores(label_prior_scores(data), truth, data.label_names, top_k=top_k, threshold=threshold)
    details["_label_frequency_baseline"] = {k: round(float(prior.metrics[k]), 4) for k in METRIC_KEYS}
    return metrics, details


def results_table(metrics: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per method, the eight metrics with three decimals."""
    lines = ["| Method | " + " | ".join(METRIC_KEYS) + " |", "|---|" + "---:|" * len(METRIC_KEYS)]
    for title, row in metrics.items():
        lines.append(f"| {title} | " + " | ".join(f"{row[k]:.3f}" for k in METRIC_KEYS) + " |")
    return "\n".join(lines)


def results_markdown(metrics: dict, details: dict, summary: dict) -> str:
    prior = details["_label_frequency_baseline"]
    excluded = sorted({lab for d in details.values() if isinstance(d, dict) and "excluded_labels" in d for lab in d["excluded_labels"]})
    head = [
        "# Results",
        "",
        f"Dataset: **{summary['dataset']}** (`{summary['root']}`, labels: {summary['label_set']}); "
        f"{summary['train']} train / {summary['test']} test images, {summary['n_labels']} labels, "
        f"vocabulary |T| = {summary['vocab_size']}; m = {summary['m']}.",
        "",
        results_table(metrics),
        "",
        f"Label-frequency baseline (every image scored by the training label frequencies): "
        f"mAPC {prior['mAPC']:.3f}, mAPO {prior['mAPO']:.3f}.",
    ]
    if excluded:
        head.append(f"Labels with no positive test image, excluded from mAPC, CP and CR: {', '.join(excluded)}.")
    return "\n".join(head) + "\n"
