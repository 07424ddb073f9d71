"""The feature store: every image through the finetuned backbone once (DESIGN: features).

    <root>/maps.npy      (N, D, H, W) float16  conv maps phi, memory-mapped
    <root>/pooled.npy    (N, D)       float16  average-pooled phi (the global feature)
    <root>/scores.npy    (N, C)       float32  the finetuned backbone's own scores (Multi-CNN)
    <root>/index.parquet image_id, split, row
    <root>/meta.json     shapes, backbone, labels

Readers open the arrays with mmap and gather rows by index: nothing is loaded whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.errors import MangoError

INDEX_SCHEMA = {"image_id": pl.String, "split": pl.String, "row": pl.Int64}


@dataclass
class FeatureStore:
    root: Path
    maps: np.ndarray  # (N, D, H, W) float16 memmap
    pooled: np.ndarray  # (N, D) float16 memmap
    index: pl.DataFrame  # INDEX_SCHEMA
    meta: dict
    scores: np.ndarray | None = None  # (N, C) Multi-CNN sigmoid scores

    @classmethod
    def open(cls, root: str | Path) -> FeatureStore:
        root = Path(root)
        for name in ("maps.npy", "pooled.npy", "index.parquet", "meta.json"):
            if not (root / name).exists():
                raise MangoError(f"{root}: not a feature store (missing {name}); run the features stage first")
        return cls(
            root=root,
            maps=np.load(root / "maps.npy", mmap_mode="r"),
            pooled=np.load(root / "pooled.npy", mmap_mode="r"),
            index=pl.read_parquet(root / "index.parquet"),
            meta=json.loads((root / "meta.json").read_text()),
            scores=np.load(root / "scores.npy") if (root / "scores.npy").exists() else None,
        )

    @property
    def labels(self) -> list[str]:
        return self.meta["labels"]


def gather(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[rows] for a memmap, reading each needed row once and in file order."""
    flat = rows.reshape(-1)
    uniq, inverse = np.unique(flat, return_inverse=True)
    return np.asarray(array[uniq])[inverse].reshape(*rows.shape, *array.shape[1:])
