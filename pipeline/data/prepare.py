"""The `prepare` stage: adapter -> checked images, train/test split, prepared Parquet tables."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from pipeline.progress import progress

from pipeline.config import DatasetParams
from pipeline.data.datasets import Prepared
from pipeline.data.datasets.coco import read_coco
from pipeline.data.datasets.mirflickr import read_mirflickr
from pipeline.data.datasets.nuswide import read_nuswide
from pipeline.errors import MangoError
from pipeline.io import atomic_path, write_json
from pipeline.schemas import IMAGES_FILE, LABELS_FILE, METADATA_RAW_FILE

log = logging.getLogger(__name__)


def image_is_readable(path: str) -> bool:
    """Decode the image (JPEG at 1/8 scale via draft mode, so it is cheap); False if corrupt."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def assign_split(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """Random train/test split of n items, deterministic by seed: array of 'train' / 'test'."""
    rng = np.random.default_rng(seed)
    n_test = int(round(n * test_fraction))
    split = np.full(n, "train", dtype=object)
    split[rng.permutation(n)[:n_test]] = "test"
    return split


def validation_protocol(images: pl.DataFrame, val_fraction: float, seed: int) -> pl.DataFrame:
    """Carve a seeded val_fraction of the training images out as the validation split and put it
    where the test split was: the test images are dropped, so no stage can see them, and every
    stage downstream trains on the rest of train and scores validation as its "test" split."""
    train = images.filter(pl.col("split") == "train")
    val = assign_split(train.height, val_fraction, seed + 1) == "test"  # its own stream, not the test split's
    log.info("prepare: dataset.score_on is val: %d of %d training images are the validation split, scored as "
             "'test'; the %d test images are dropped", int(val.sum()), train.height, images.height - train.height)
    return train.with_columns(pl.Series("split", np.where(val, "test", "train"), dtype=pl.String))


# dataset.name -> adapter: each reads its official on-disk layout into a `Prepared`.
ADAPTERS: dict[str, Callable[[DatasetParams], Prepared]] = {
    "mirflickr": lambda p: read_mirflickr(p.root, p.labels, p.tags),
    "nuswide": lambda p: read_nuswide(p.root, p.groups),
    "coco": lambda p: read_coco(p.root),
}


def read_dataset(params: DatasetParams) -> Prepared:
    if params.name not in ADAPTERS:
        raise MangoError(f"dataset.name: unknown dataset '{params.name}' (known: {', '.join(ADAPTERS)})")
    return ADAPTERS[params.name](params)


def prepare(params: DatasetParams) -> tuple[Prepared, dict]:
    """Read the dataset, drop corrupt images (counted), split into train/test."""
    prep = read_dataset(params)
    paths = prep.images["path"].to_list()
    ok = np.array([image_is_readable(p) for p in progress(paths, desc="prepare: checking images", unit="img")])
    corrupt = [p for p, good in zip(paths, ok) if not good]
    for p in corrupt[:10]:
        log.warning("skipping corrupt image %s", p)
    if len(corrupt) > 10:
        log.warning("... and %d more corrupt images", len(corrupt) - 10)
    keep = pl.Series(ok)
    images = prep.images.filter(keep)
    if images.height == 0:
        raise MangoError(f"dataset.root '{params.root}': no readable image")
    official = "split" in images.columns and params.split == "official"
    if official:
        log.info("prepare: the official %s train/test split is used (dataset.test_fraction ignored)", params.name)
    else:
        if "split" in images.columns:
            log.info("prepare: dataset.split is random: the official %s split is replaced by a random one", params.name)
        elif params.split == "official":
            log.info("prepare: %s has no official split: random, test_fraction %.2f", params.name, params.test_fraction)
        images = images.drop("split", strict=False).with_columns(
            pl.Series("split", assign_split(images.height, params.test_fraction, params.split_seed), dtype=pl.String))
    if params.score_on == "val":
        images = validation_protocol(images, params.val_fraction, params.split_seed)
    for note in prep.notes:
        log.warning("%s", note)
    kept_ids = images["image_id"]
    prep = Prepared(
        images=images.select("image_id", "path", "split"),
        labels=prep.labels.filter(pl.col("image_id").is_in(kept_ids.implode())),
        metadata_raw=prep.metadata_raw.filter(pl.col("image_id").is_in(kept_ids.implode())),
        label_names=prep.label_names,
        notes=prep.notes,
        counts=prep.counts,
    )
    stats = {
        "dataset": params.name,
        "synthetic": (Path(params.root) / "SYNTHETIC.txt").exists(),
        "root": str(params.root),
        "label_set": params.labels if params.name == "mirflickr" else f"all {len(prep.label_names)}",
        "split": ("official" if official else f"random (test_fraction {params.test_fraction}, seed {params.split_seed})")
                 + (f"; scored on validation (val_fraction {params.val_fraction} of train)" if params.score_on == "val" else ""),
        "score_on": params.score_on,
        "labels": prep.label_names,
        "images_found": len(paths),
        "images_corrupt": len(corrupt),
        "corrupt_examples": corrupt[:10],
        "images": images.height,
        "train": int((images["split"] == "train").sum()),
        "test": int((images["split"] == "test").sum()),
        "raw_metadata_items": prep.metadata_raw.height,
        "notes": prep.notes,
        "adapter_counts": prep.counts,
    }
    log.info("prepare: %d images (%d corrupt skipped), %d train / %d test, %d labels",
             stats["images"], len(corrupt), stats["train"], stats["test"], len(prep.label_names))
    return prep, stats


def write_prepared(prep: Prepared, stats: dict, out_dir: Path) -> None:
    """Write images/labels/metadata_raw Parquet and stats.json into `out_dir`, atomically."""
    with atomic_path(out_dir, directory=True) as tmp:
        prep.images.write_parquet(tmp / IMAGES_FILE)
        prep.labels.write_parquet(tmp / LABELS_FILE)
        prep.metadata_raw.write_parquet(tmp / METADATA_RAW_FILE)
        write_json(stats, tmp / "stats.json")
