"""`mango evaluate`: score one predictions file against a truth file into the eight metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import log, stage_timer


def command(
    predictions: Annotated[Path, typer.Option("--predictions", help="Predictions Parquet: image_id + one score column per label.")],
    truth: Annotated[Path, typer.Option("--truth", help="Truth Parquet: image_id + one 0/1 column per label.")],
    out: Annotated[Path, typer.Option("--out", help="Metrics JSON to write: the eight metrics as fractions in [0, 1].")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels considered per image for the threshold metrics.")] = 3,
    threshold: Annotated[float, typer.Option("--threshold", help="Predict a top-k label when its score is >= this.")] = 0.5,
) -> None:
    from pipeline.io import write_json
    from pipeline.evaluation.metrics import evaluate_files
    from pipeline.schemas import METRIC_KEYS

    with stage_timer("evaluate"):
        ev = evaluate_files(predictions, truth, top_k=top_k, threshold=threshold)
        write_json({k: float(ev.metrics[k]) for k in METRIC_KEYS}, out)
        log.info("%s: %d images, %d labels (%d excluded); %s", predictions, ev.n_images, ev.n_labels,
                 len(ev.excluded_labels), "  ".join(f"{k} {ev.metrics[k]:.4f}" for k in METRIC_KEYS))
        for note in ev.notes:
            log.info("note: %s", note)
