"""Options and helpers shared by the stage commands."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger("mango")

ParamsOption = Annotated[Path, typer.Option("--params", help="The params.yaml to read.")]
# The stores and tables the stage commands read, each described once.
PreparedOption = Annotated[Path, typer.Option("--prepared", help="Folder written by `mango prepare`.")]
MetadataOption = Annotated[Path, typer.Option("--metadata", help="metadata.parquet written by `mango lemmatise` (the kept images).")]
FeaturesOption = Annotated[Path, typer.Option("--features", help="Feature store written by `mango features`.")]
AttentionOption = Annotated[Path, typer.Option("--attention", help="Attention store written by `mango insatten`.")]
NeighboursOption = Annotated[Path, typer.Option("--neighbours", help="neighbours.parquet written by `mango neighbours`.")]
LiveOption = Annotated[Path | None, typer.Option("--live", help="dvclive folder for per-epoch training curves.")]


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): the stage's start-up cost
    (interpreter, imports, argument parsing) when called as its work begins."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def stage_timer(name: str) -> Iterator[None]:
    """Log the stage's wall time on success: `stage <name> finished in <s> s (start-up <s> s)`,
    start-up being the time from the process's start to the beginning of the work."""
    startup = process_age()
    start = time.perf_counter()
    yield
    took = time.perf_counter() - start
    if startup is None:
        log.info("stage %s finished in %.1f s", name, took)
    else:
        log.info("stage %s finished in %.1f s (start-up %.1f s)", name, took, startup)


def open_store_with_data(features: Path, prepared: Path, metadata: Path):
    """The feature store and the labelled images (ids, paths, splits, (N, C) labels) in store-row order."""
    from pipeline.data.tables import load_annotated
    from pipeline.errors import MangoError
    from pipeline.features.store import FeatureStore

    store = FeatureStore.open(features)
    data = load_annotated(prepared, metadata)
    if store.index["image_id"].to_list() != data.image_ids:
        raise MangoError(f"{features}: the feature store does not match {metadata}; re-run the features stage")
    if store.labels != data.label_names:
        raise MangoError(f"{features}: labels {store.labels} differ from the prepared labels {data.label_names}")
    return store, data


def open_store_with_labels(features: Path, prepared: Path, metadata: Path):
    """The feature store and the (N, C) label matrix in store-row order."""
    store, data = open_store_with_data(features, prepared, metadata)
    return store, data.targets


def trained_mangonet(features: Path, attention: Path, neighbours: Path, prepared: Path, metadata: Path,
                     checkpoint: Path, params):
    """The trained MangoNet of `checkpoint` over the stores, on the CPU, as figures and the results
    page show it: (context at the checkpoint's m, model, checkpoint, labelled images)."""
    import torch

    from pipeline.features.store import AttentionStore
    from pipeline.io import read_parquet
    from pipeline.methods import Context, create_model, neighbour_rows
    from pipeline.training.loop import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    m = int(ckpt["config"]["m"])
    store, data = open_store_with_data(features, prepared, metadata)
    nb, _ = neighbour_rows(read_parquet(neighbours, {"image_id": None, "rank": None, "neighbour_id": None, "score": None}),
                           store, m)
    ctx = Context(store=store, attention=AttentionStore.open(attention), neighbours=nb, targets=data.targets,
                  params=params, device=torch.device("cpu"), multicnn=store.scores, m=m)
    return ctx, create_model("mangonet", ctx, ckpt), ckpt, data
