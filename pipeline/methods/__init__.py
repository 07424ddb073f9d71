"""The method registry: every row of the paper's tables is a registered method.

A method has a name (its predictions file is `predictions/<name>.parquet`), the title used in
the tables, the DVC stage that produces it and whether it reads the metadata neighbourhood
(only those stages list `m` in dvc.yaml). Trainable methods on cached features also register a
`train` function, called by `mango train <name>` (the `train@<name>` DVC stages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from pipeline.config import Params
from pipeline.errors import MangoError


@dataclass
class Context:
    """Everything a method may read: cached features, attention, neighbourhood, labels."""

    store: "FeatureStore"  # noqa: F821 (pipeline.store)
    attention: "AttentionStore | None"  # noqa: F821 (pipeline.attention)
    neighbours: np.ndarray | None  # (N, m) store rows of each row's neighbours, -1 where missing
    targets: np.ndarray  # (N, C) 0/1, by store row
    params: Params
    device: torch.device
    live_dir: Path | None = None

    def rows(self, split: str) -> np.ndarray:
        return self.store.index.filter(pl.col("split") == split)["row"].to_numpy()


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    stage: str
    uses_neighbours: bool = False
    train: Callable[[Context], tuple[torch.nn.Module | None, np.ndarray, dict]] | None = field(default=None, compare=False)


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in REGISTRY:
        raise ValueError(f"method '{method.name}' registered twice")
    REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    _load_all()
    if name not in REGISTRY:
        raise MangoError(f"unknown method '{name}'; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def all_methods() -> dict[str, Method]:
    _load_all()
    return REGISTRY


def _load_all() -> None:
    from pipeline.methods import mangonet  # noqa: F401  (registers on import)


register(Method("multicnn", "Multi-CNN", stage="features"))
register(Method("insatten", "InsAtten", stage="insatten"))


def neighbour_rows(neighbours: pl.DataFrame, store, k: int) -> np.ndarray:
    """(N, k) store rows of each store row's first k neighbours (rank order), -1 where missing."""
    row_of = dict(zip(store.index["image_id"].to_list(), store.index["row"].to_list()))
    out = np.full((store.meta["n"], k), -1, dtype=np.int64)
    bad_rank = neighbours.filter(pl.col("rank") < 1)
    if bad_rank.height:
        raise MangoError(f"neighbours: rank {bad_rank['rank'][0]} of image {bad_rank['image_id'][0]} is not 1-based")
    if neighbours.height and neighbours["rank"].max() < k:
        raise MangoError(f"neighbours: the file holds at most {neighbours['rank'].max()} neighbours per image but m = {k}; "
                         f"re-run the neighbour search with neighbours.k_max >= m")
    nb = neighbours.filter(pl.col("rank") <= k)
    unknown = nb.filter(~pl.col("image_id").is_in(list(row_of)) | ~pl.col("neighbour_id").is_in(list(row_of)))
    if unknown.height:
        bad = unknown.row(0, named=True)
        raise MangoError(f"neighbours: pair {bad['image_id']} -> {bad['neighbour_id']} names an image not in the feature store")
    src = np.array([row_of[i] for i in nb["image_id"].to_list()], dtype=np.int64)
    dst = np.array([row_of[i] for i in nb["neighbour_id"].to_list()], dtype=np.int64)
    out[src, nb["rank"].to_numpy() - 1] = dst
    return out
