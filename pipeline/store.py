"""The feature store: every image through the finetuned backbone once (DESIGN: features).

    <root>/maps.npy      (N, D, H, W) float16  conv maps phi, memory-mapped
    <root>/pooled.npy    (N, D)       float16  average-pooled phi (the global feature)
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
        )

    @property
    def labels(self) -> list[str]:
        return self.meta["labels"]

    def rows(self, image_ids: list[str] | pl.Series) -> np.ndarray:
        """Store rows of `image_ids` (MangoError naming the first unknown id)."""
        lookup = dict(zip(self.index["image_id"].to_list(), self.index["row"].to_list()))
        out = np.empty(len(image_ids), dtype=np.int64)
        for i, image_id in enumerate(image_ids):
            if image_id not in lookup:
                raise MangoError(f"{self.root}: image '{image_id}' is not in the feature store")
            out[i] = lookup[image_id]
        return out

    def split_ids(self, split: str) -> list[str]:
        return self.index.filter(pl.col("split") == split)["image_id"].to_list()


def gather(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[rows] for a memmap, reading each needed row once and in file order."""
    flat = rows.reshape(-1)
    uniq, inverse = np.unique(flat, return_inverse=True)
    return np.asarray(array[uniq])[inverse].reshape(*rows.shape, *array.shape[1:])
