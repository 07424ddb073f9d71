"""`mango report`: score every predictions file into reports/metrics.json and a Markdown table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, PreparedOption, stage_timer


def command(
    prepared: PreparedOption,
    interim: Annotated[Path, typer.Option(help="Folder written by `mango lemmatise`.")],
    metrics: Annotated[Path, typer.Option(help="DVC metrics JSON to write.")],
    table: Annotated[Path, typer.Option(help="Markdown results table to write.")],
    details: Annotated[Path, typer.Option(help="JSON with per-label AP, excluded labels and notes.")],
    selection: Annotated[Path | None, typer.Option(help="Settings chosen on validation (`make select`), copied "
                                                        "into the details as `selection`.")] = None,
    variants: Annotated[Path | None, typer.Option(help="MangoNet's co-attention variants on the test split "
                                                       "(`make coattention-variants`), shown as a table.")] = None,
    predictions: Annotated[list[Path] | None, typer.Option(help="Predictions files, one per method (repeat the option).")] = None,
    predictions_dir: Annotated[Path | None, typer.Option("--predictions-dir", help="Folder of <method>.parquet predictions: "
                                                         "every registered method's file found there is scored.")] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.config import load_params
    from pipeline.data.tables import load_annotated
    from pipeline.schemas import METADATA_FILE
    from pipeline.io import atomic_path, read_json, write_json
    from pipeline.evaluation.paper import PUBLISHED, TABLES
    from pipeline.errors import MangoError
    from pipeline.evaluation.report import attention_summary, predictions_in, read_selection, read_variants, results_markdown, score_predictions

    with stage_timer("report"):
        p = load_params(params)
        data = load_annotated(prepared, interim / METADATA_FILE)
        files = list(predictions or []) + (predictions_in(predictions_dir) if predictions_dir is not None else [])
        if not files:
            raise MangoError("no predictions to score: pass --predictions-dir (a folder of <method>.parquet) or --predictions")
        scores, info = score_predictions(data, files, p.evaluate.top_k, p.evaluate.threshold)
        prep_stats, lem_stats = (read_json(prepared / "stats.json"), read_json(interim / "stats.json"))
        summary = {"scored_on": prep_stats.get("score_on", "test"), "dataset": prep_stats["dataset"], "root": prep_stats["root"], "label_set": prep_stats["label_set"],
                   "train": lem_stats["train"], "test": lem_stats["test"], "n_labels": len(data.label_names),
                   "vocab_size": lem_stats["vocab_size"], "synthetic": prep_stats.get("synthetic", False)}
        published, numbers = None, None
        if not summary["synthetic"] and summary["dataset"] in PUBLISHED:
            published, numbers = PUBLISHED[summary["dataset"]], TABLES[summary["dataset"]]
        write_json(scores, metrics)
        attention = {info[title]["method"]: stats for title, stats in attention_summary(info).items()}
        chosen = read_selection(selection) if selection is not None else {}
        coatten = read_variants(variants) if variants is not None else None
        write_json({"summary": summary, "methods": info, "attention": attention, "selection": chosen,
                    **({"coattention_variants": coatten} if coatten else {})}, details)
        with atomic_path(table) as tmp:
            tmp.write_text(results_markdown(scores, info, summary, published, numbers, chosen, coatten))
