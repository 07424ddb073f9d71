"""Options and helpers shared by the stage commands."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger("mango")

ParamsOption = Annotated[Path, typer.Option("--params", help="The params.yaml to read.")]


@contextlib.contextmanager
def stage_timer(name: str) -> Iterator[None]:
    """Log the stage's wall time on success: `stage <name> finished in <s> s`."""
    start = time.perf_counter()
    yield
    log.info("stage %s finished in %.1f s", name, time.perf_counter() - start)


def open_store_with_labels(features: Path, prepared: Path, metadata: Path):
    """The feature store and the (N, C) label matrix in store-row order."""
    from pipeline.data import load_annotated
    from pipeline.errors import MangoError
    from pipeline.store import FeatureStore

    store = FeatureStore.open(features)
    data = load_annotated(prepared, metadata)
    if store.index["image_id"].to_list() != data.image_ids:
        raise MangoError(f"{features}: the feature store does not match {metadata}; re-run the features stage")
    if store.labels != data.label_names:
        raise MangoError(f"{features}: labels {store.labels} differ from the prepared labels {data.label_names}")
    return store, data.targets
