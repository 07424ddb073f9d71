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
    """Everything a method may read, all indexed by feature-store row (N rows, C labels).

    Which optional parts are loaded follows the method's flags (uses_neighbours, ...).
    """

    store: "FeatureStore"  # noqa: F821 (pipeline.features.store): maps (N, D, H, W), pooled (N, D), index
    attention: "AttentionStore | None"  # noqa: F821 (pipeline.features.store): beta (N, C, H, W), y (N, C)
    neighbours: np.ndarray | None  # (N, m) store rows of each row's metadata neighbours, -1 where missing
    targets: np.ndarray  # (N, C) 0/1
    params: Params
    device: torch.device
    live_dir: Path | None = None
    neighbour_scores: np.ndarray | None = None  # (N, m) Jaccard scores of those neighbours, nan where missing
    multicnn: np.ndarray | None = None  # (N, C) Multi-CNN scores (sigmoid) of every row
    metadata: "sp.csr_matrix | None" = None  # noqa: F821 (N, |T|) binary term matrix, columns in vocabulary order
    m: int = 0  # the neighbourhood size this run uses (params.m, or the method's fixed m)
    nodes: "NodeStore | None" = None  # noqa: F821 (pipeline.features.nodes): MangoNet's node features, computed once

    def rows(self, split: str) -> np.ndarray:
        """(R,) int64 store rows of `split`, a writable array (torch warns when indexing with a read-only one)."""
        return self.store.index.filter(pl.col("split") == split)["row"].to_numpy(writable=True)


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    stage: str
    uses_neighbours: bool = False  # reads the metadata neighbourhood (its stage lists `m`, unless m is fixed)
    uses_attention: bool = False  # reads InsAtten's beta and y
    uses_metadata: bool = False  # reads the binary term matrix
    m: int | None = None  # a fixed neighbourhood size (the MangoNet-m3/m7/m15 rows), else params.m
    train: Callable[[Context], tuple[torch.nn.Module | None, np.ndarray, dict]] | None = field(default=None, compare=False)
    # The trained model again, from its checkpoint's config (`create_model`), and its inputs for store rows.
    create: Callable[[Context, dict], torch.nn.Module] | None = field(default=None, compare=False)
    inputs: Callable[[Context, np.ndarray, dict], tuple[torch.Tensor, ...]] | None = field(default=None, compare=False)


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


def create_model(name: str, ctx: Context, checkpoint: dict) -> torch.nn.Module:
    """The trained model of method `name` rebuilt from its checkpoint (`load_checkpoint`), in eval mode."""
    method = get_method(name)
    if method.create is None:
        raise MangoError(f"method '{name}' cannot be rebuilt from a checkpoint (registered without `create`)")
    model = method.create(ctx, checkpoint["config"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def model_inputs(name: str, ctx: Context, rows: np.ndarray, config: dict) -> tuple[torch.Tensor, ...]:
    """The inputs of method `name`'s model (as `create_model` rebuilds it) for store `rows`."""
    method = get_method(name)
    if method.inputs is None:
        raise MangoError(f"method '{name}' registers no model inputs")
    return method.inputs(ctx, rows, config)


def _load_all() -> None:
    """Import every module of this package: each registers its methods on import."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


register(Method("multicnn", "Multi-CNN", stage="features"))
register(Method("insatten", "InsAtten", stage="insatten"))


def neighbour_rows(neighbours: pl.DataFrame, store, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) store rows of each store row's first k neighbours (rank order), -1 where missing,
    and their (N, k) scores, nan where missing."""
    row_of = dict(zip(store.index["image_id"].to_list(), store.index["row"].to_list()))
    out = np.full((store.meta["n"], k), -1, dtype=np.int64)
    scores = np.full((store.meta["n"], k), np.nan)
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
    scores[src, nb["rank"].to_numpy() - 1] = nb["score"].to_numpy()
    return out, scores


def term_matrix(metadata: pl.DataFrame, store) -> "sp.csr_matrix":  # noqa: F821
    """(N, |T|) binary matrix of each store row's terms; columns are the sorted vocabulary (the one
    term-matrix builder, `pipeline.neighbours.common.membership_matrix`, with rows in store order)."""
    import scipy.sparse as sp

    from pipeline.neighbours.common import membership_matrix

    X = membership_matrix(metadata["terms"]).tocoo()  # rows in metadata order
    row_of = dict(zip(store.index["image_id"].to_list(), store.index["row"].to_list()))
    store_row = np.array([row_of[i] for i in metadata["image_id"].to_list()], dtype=np.int64)
    return sp.csr_matrix((X.data.astype(np.float32), (store_row[X.row], X.col)), shape=(store.meta["n"], X.shape[1]))
