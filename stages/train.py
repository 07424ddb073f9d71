"""`mango train METHOD`: train a registered method on cached features (the `train@METHOD` stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import FeaturesOption, LiveOption, MetadataOption, ParamsOption, PreparedOption, stage_timer


def command(
    method: Annotated[str, typer.Argument(help="Registered method name, e.g. mangonet.")],
    features: FeaturesOption,
    prepared: PreparedOption,
    metadata: MetadataOption,
    predictions: Annotated[Path, typer.Option(help="Predictions Parquet to write (test split).")],
    attention: Annotated[Path | None, typer.Option(help="Attention store written by `mango insatten`.")] = None,
    neighbours: Annotated[Path | None, typer.Option(help="neighbours.parquet written by `mango neighbours`.")] = None,
    nodes: Annotated[Path | None, typer.Option(help="Node store written by `mango nodes` (MangoNet family; "
                                                    "without it the node features are computed in this run).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint to write (trainable methods).")] = None,
    live: LiveOption = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline import distributed
    from pipeline.features.store import AttentionStore
    from pipeline.config import load_params
    from pipeline.device import resolve_device, seed_everything
    from pipeline.errors import MangoError
    from pipeline.io import read_parquet
    from pipeline.schemas import METADATA_SCHEMA
    from pipeline.methods import Context, get_method, neighbour_rows, term_matrix
    from stages.common import open_store_with_labels

    spec = get_method(method)
    with stage_timer(f"{spec.stage}@{method}"):
        p = load_params(params)
        if spec.train is None:
            raise MangoError(f"method '{method}' is produced by the {spec.stage} stage, not by `mango train`")
        device = resolve_device(p.device, p.precision)
        seed_everything(p.seed)
        store, targets = open_store_with_labels(features, prepared, metadata)
        m = spec.m or p.m
        ctx = Context(store=store, attention=None, neighbours=None, targets=targets, params=p, device=device,
                      live_dir=live, multicnn=store.scores, m=m)
        if spec.uses_neighbours:
            if neighbours is None:
                raise MangoError(f"method '{method}' reads the metadata neighbourhood: pass --neighbours")
            table = read_parquet(neighbours, {"image_id": None, "rank": None, "neighbour_id": None, "score": None})
            ctx.neighbours, ctx.neighbour_scores = neighbour_rows(table, store, m)
        if spec.uses_attention:
            if attention is None:
                raise MangoError(f"method '{method}' reads InsAtten's attention maps: pass --attention")
            ctx.attention = AttentionStore.open(attention)
            if nodes is not None and spec.uses_neighbours:
                from pipeline.features.nodes import NodeStore

                ctx.nodes = NodeStore.open(nodes)
        if spec.uses_metadata:
            ctx.metadata = term_matrix(read_parquet(metadata, METADATA_SCHEMA), store)
        with distributed.session(device):  # DDP under torchrun (every trainer goes through pipeline.training.loop.fit)
            model, scores, info = spec.train(ctx)
            if distributed.is_main():  # one writer; the other processes wait at the session's barrier
                _write(method, model, scores, info, ctx, checkpoint, live, predictions)


def _write(method: str, model, scores, info: dict, ctx, checkpoint: Path | None, live: Path | None, predictions: Path) -> None:
    """The outputs of `mango train`: checkpoint, dvclive note for untrained methods, predictions."""
    import torch

    from pipeline.data.tables import write_predictions
    from pipeline.io import write_json
    from pipeline.training.loop import save_checkpoint

    store = ctx.store
    if checkpoint is not None:  # also for methods without torch parameters: their chosen settings
        save_checkpoint(checkpoint, model if model is not None else torch.nn.Module(), info["config"],
                        labels=store.labels, history=info.get("history", []))
    if live is not None and not (live / "metrics.json").exists():  # methods trained without dvclive
        write_json({"method": method, "config": info["config"], "note": "no per-epoch training"}, live / "metrics.json")
    test_rows = ctx.rows("test")
    write_predictions(predictions, store.index["image_id"].gather(test_rows).to_list(), scores, store.labels,
                      attention=info.get("attention"))
