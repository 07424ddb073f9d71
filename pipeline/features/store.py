"""The stores of cached arrays, each with its writer and reader (DESIGN: features, insatten).

The feature store (`features`): every image through the finetuned backbone once.

    <root>/maps.npy      (N, D, H, W) float16  conv maps phi, memory-mapped
    <root>/pooled.npy    (N, D)       float16  average-pooled phi (the global feature)
    <root>/scores.npy    (N, C)       float32  the finetuned backbone's own scores (Multi-CNN)
    <root>/index.parquet image_id, split, row
    <root>/meta.json     shapes, backbone, labels

The attention store (`insatten`): InsAtten (eq. 1-3) of every feature-store row.

    <root>/beta.npy  (N, C, H, W) float16  attention maps beta, memory-mapped
    <root>/y.npy     (N, C)       float32  confidence logits y
    <root>/meta.json n, labels, height, width

Readers open the arrays with mmap and gather rows by index: nothing is loaded whole. Writers
allocate the memory-mapped arrays first (`allocate`), so that extraction streams into them
(each process its rows under torchrun), then write the small files (`finish`); `write` does
both for arrays already in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.errors import MangoError
from pipeline.schemas import INDEX_FILE, INDEX_SCHEMA



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
        for name in ("maps.npy", "pooled.npy", INDEX_FILE, "meta.json"):
            if not (root / name).exists():
                raise MangoError(f"{root}: not a feature store (missing {name}); run the features stage first")
        return cls(
            root=root,
            maps=np.load(root / "maps.npy", mmap_mode="r"),
            pooled=np.load(root / "pooled.npy", mmap_mode="r"),
            index=pl.read_parquet(root / INDEX_FILE),
            meta=json.loads((root / "meta.json").read_text()),
            scores=np.load(root / "scores.npy") if (root / "scores.npy").exists() else None,
        )

    @property
    def labels(self) -> list[str]:
        return self.meta["labels"]

    @staticmethod
    def allocate(root: Path, n: int, dim: int, height: int, width: int, n_labels: int | None) -> dict[str, np.ndarray]:
        """Create maps.npy, pooled.npy and (unless n_labels is None) scores.npy, zeros, under `root`;
        return them opened r+."""
        shapes = {"maps": ((n, dim, height, width), np.float16), "pooled": ((n, dim), np.float16)}
        if n_labels is not None:
            shapes["scores"] = ((n, n_labels), np.float32)
        for name, (shape, dtype) in shapes.items():
            np.lib.format.open_memmap(Path(root) / f"{name}.npy", mode="w+", dtype=dtype, shape=shape).flush()
        return FeatureStore.open_arrays(root)

    @staticmethod
    def open_arrays(root: Path) -> dict[str, np.ndarray]:
        """The arrays of an allocated store, memory-mapped r+ (every process of a sharded run)."""
        return {name: np.load(Path(root) / f"{name}.npy", mmap_mode="r+") for name in ("maps", "pooled", "scores")
                if (Path(root) / f"{name}.npy").exists()}

    @staticmethod
    def finish(root: Path, image_ids: list[str], splits: list[str], meta: dict) -> None:
        """index.parquet (store row of every image) and meta.json (n, dim, height, width, labels, ...)."""
        pl.DataFrame({"image_id": image_ids, "split": list(splits), "row": np.arange(len(image_ids), dtype=np.int64)},
                     schema=INDEX_SCHEMA).write_parquet(Path(root) / INDEX_FILE)
        (Path(root) / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def write(cls, root: str | Path, maps: np.ndarray, image_ids: list[str], splits: list[str], labels: list[str],
              scores: np.ndarray | None = None, **meta) -> FeatureStore:
        """A whole store from arrays in memory: maps (N, D, H, W), pooled = their mean over positions,
        scores (N, C) the Multi-CNN's (none: a store without them)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        n, dim, h, w = maps.shape
        arrays = cls.allocate(root, n, dim, h, w, None if scores is None else len(labels))
        arrays["maps"][:] = maps.astype(np.float16)
        arrays["pooled"][:] = np.asarray(maps, dtype=np.float32).mean(axis=(2, 3)).astype(np.float16)
        if scores is not None:
            arrays["scores"][:] = scores.astype(np.float32)
        for arr in arrays.values():
            arr.flush()
        del arrays
        cls.finish(root, image_ids, splits, {"n": n, "dim": dim, "height": h, "width": w, "labels": list(labels), **meta})
        return cls.open(root)


@dataclass
class AttentionStore:
    beta: np.ndarray  # (N, C, H, W) float16 memmap
    y: np.ndarray  # (N, C) float32

    @classmethod
    def open(cls, root: str | Path) -> AttentionStore:
        root = Path(root)
        for name in ("beta.npy", "y.npy"):
            if not (root / name).exists():
                raise MangoError(f"{root}: no {name}; run the insatten stage first")
        return cls(beta=np.load(root / "beta.npy", mmap_mode="r"), y=np.load(root / "y.npy"))

    @staticmethod
    def allocate(root: Path, n: int, n_labels: int, height: int, width: int) -> np.ndarray:
        """Create beta.npy under `root`; return it memory-mapped for writing."""
        return np.lib.format.open_memmap(Path(root) / "beta.npy", mode="w+", dtype=np.float16,
                                         shape=(n, n_labels, height, width))

    @staticmethod
    def finish(root: Path, y: np.ndarray, labels: list[str], height: int, width: int) -> None:
        """y.npy (N, C) and meta.json, after beta is written."""
        np.save(Path(root) / "y.npy", y.astype(np.float32))
        (Path(root) / "meta.json").write_text(json.dumps({"n": int(y.shape[0]), "labels": list(labels), "height": height,
                                                           "width": width}, indent=2) + "\n")

    @classmethod
    def write(cls, root: str | Path, beta: np.ndarray, y: np.ndarray, labels: list[str]) -> AttentionStore:
        """A whole store from arrays in memory: beta (N, C, H, W), y (N, C) logits."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        out = cls.allocate(root, *beta.shape[:2], *beta.shape[2:])
        out[:] = beta.astype(np.float16)
        out.flush()
        del out
        cls.finish(root, y, labels, *beta.shape[2:])
        return cls.open(root)


def gather(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[rows] for a memmap, reading each needed row once and in file order."""
    flat = rows.reshape(-1)
    uniq, inverse = np.unique(flat, return_inverse=True)
    return np.asarray(array[uniq])[inverse].reshape(*rows.shape, *array.shape[1:])
