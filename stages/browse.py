"""`mango browse`: the static results page reports/browse/index.html (open it in any browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import (AttentionOption, FeaturesOption, MetadataOption, NeighboursOption, ParamsOption,
                           PreparedOption, stage_timer)


def command(
    details: Annotated[Path, typer.Option(help="reports/evaluation.json written by `mango report`.")],
    metrics: Annotated[Path, typer.Option(help="reports/metrics.json written by `mango report`.")],
    predictions_dir: Annotated[Path, typer.Option("--predictions-dir", help="Folder of <method>.parquet predictions.")],
    features: FeaturesOption,
    attention: AttentionOption,
    neighbours: NeighboursOption,
    prepared: PreparedOption,
    metadata: MetadataOption,
    checkpoint: Annotated[Path, typer.Option(help="MangoNet checkpoint (its m, and its co-attention maps).")],
    out: Annotated[Path, typer.Option(help="Folder of the page: index.html and img/.")],
    disagree: Annotated[int, typer.Option(min=0, help="Test images where MangoNet and Multi-CNN disagree most.")] = 16,
    more: Annotated[int, typer.Option(min=0, help="Further test images, a seeded sample.")] = 16,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    import numpy as np
    import polars as pl

    from pipeline.config import load_params
    from pipeline.errors import MangoError
    from pipeline.evaluation.browse import METHODS, Card, choose_rows, write_page
    from pipeline.evaluation.figures import coattention_maps
    from pipeline.evaluation.metrics import topk_predictions
    from pipeline.io import atomic_path, read_json, read_parquet
    from pipeline.methods import all_methods, model_inputs
    from pipeline.schemas import METRIC_KEYS
    from stages.common import trained_mangonet

    with stage_timer("browse"):
        p = load_params(params)
        info, scores_by_title = read_json(details), read_json(metrics)
        ctx, model, ckpt, data = trained_mangonet(features, attention, neighbours, prepared, metadata, checkpoint, p)
        store, targets, nb, m = ctx.store, ctx.targets, ctx.neighbours, ctx.m
        meta = read_parquet(metadata, {"image_id": None, "terms": None})
        terms = dict(zip(meta["image_id"].to_list(), meta["terms"].to_list()))
        test = store.index.filter(pl.col("split") == "test")
        rows = test["row"].to_numpy()
        titles = {mth.title: name for name, mth in all_methods().items()}
        predicted = {}
        for title in METHODS:
            path = predictions_dir / f"{titles[title]}.parquet"
            frame = read_parquet(path, {"image_id": None})
            frame = test.select("image_id").join(frame, on="image_id", how="left", maintain_order="left")
            if frame[store.labels[0]].null_count():
                raise MangoError(f"{path}: no predictions for some test images; re-run the stage that writes it")
            predicted[title] = frame.select(store.labels).to_numpy()
        chosen = choose_rows(predicted["MangoNet"], predicted["Multi-CNN"], disagree, more)
        kept = {t: topk_predictions(s[chosen], p.evaluate.top_k, p.evaluate.threshold) for t, s in predicted.items()}
        pool = int(ckpt["config"]["coatten_pool"])
        h, w = -(-store.meta["height"] // pool), -(-store.meta["width"] // pool)
        alphas = coattention_maps(model, model_inputs("mangonet", ctx, rows[chosen], ckpt["config"]), h, w)
        cards = []
        for k, i in enumerate(chosen):
            row = rows[i]
            top = {t: [store.labels[j] for j in np.argsort(-s[i], kind="stable") if kept[t][k, j]]
                   for t, s in predicted.items()}
            nbs = [(data.image_ids[j], data.paths[j], terms.get(data.image_ids[j], [])) for j in nb[row] if j >= 0]
            alpha = alphas[k].copy()
            alpha[1 + len(nbs):] = np.nan
            cards.append(Card(image_id=data.image_ids[row], path=data.paths[row],
                              truth=[store.labels[j] for j in np.flatnonzero(targets[row])], predicted=top,
                              neighbours=nbs, alpha=alpha))
        summary = info.get("summary", {})
        dataset = "the synthetic world" if summary.get("synthetic") else summary.get("dataset", "")
        with atomic_path(out, directory=True) as tmp:
            write_page(tmp, info, scores_by_title, METRIC_KEYS, cards, store.labels,
                       f"MangoNet results ({dataset}, m = {m})")
