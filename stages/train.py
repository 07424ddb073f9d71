"""`mango train METHOD`: train a registered method on cached features (the `train@METHOD` stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, stage_timer


def command(
    method: Annotated[str, typer.Argument(help="Registered method name, e.g. mangonet.")],
    features: Annotated[Path, typer.Option(help="Feature store written by `mango features`.")],
    prepared: Annotated[Path, typer.Option(help="Folder written by `mango prepare`.")],
    metadata: Annotated[Path, typer.Option(help="metadata.parquet written by `mango lemmatise`.")],
    predictions: Annotated[Path, typer.Option(help="Predictions Parquet to write (test split).")],
    attention: Annotated[Path | None, typer.Option(help="Attention store written by `mango insatten`.")] = None,
    neighbours: Annotated[Path | None, typer.Option(help="neighbours.parquet written by `mango neighbours`.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint to write (trainable methods).")] = None,
    live: Annotated[Path | None, typer.Option(help="dvclive folder for per-epoch training curves.")] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.attention import AttentionStore
    from pipeline.config import load_params
    from pipeline.data import write_predictions
    from pipeline.device import resolve_device, seed_everything
    from pipeline.errors import MangoError
    from pipeline.io import read_parquet
    from pipeline.methods import Context, get_method, neighbour_rows
    from pipeline.train import save_checkpoint
    from stages.common import open_store_with_labels

    with stage_timer(f"train@{method}"):
        p = load_params(params)
        spec = get_method(method)
        if spec.train is None:
            raise MangoError(f"method '{method}' is produced by the {spec.stage} stage, not by `mango train`")
        device = resolve_device(p.device)
        seed_everything(p.seed)
        store, targets = open_store_with_labels(features, prepared, metadata)
        nb = None
        if spec.uses_neighbours:
            if neighbours is None:
                raise MangoError(f"method '{method}' needs --neighbours")
            nb = neighbour_rows(read_parquet(neighbours, {"image_id": None, "rank": None, "neighbour_id": None}), store, p.m)
        ctx = Context(store=store, attention=AttentionStore.open(attention) if attention else None, neighbours=nb,
                      targets=targets, params=p, device=device, live_dir=live)
        model, scores, info = spec.train(ctx)
        if model is not None and checkpoint is not None:
            save_checkpoint(checkpoint, model, info["config"], labels=store.labels, history=info.get("history", []))
        test_rows = ctx.rows("test")
        write_predictions(predictions, store.index["image_id"].gather(test_rows).to_list(), scores, store.labels)
