"""The shared output of every dataset adapter, and the Parquet schemas of `prepare`."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

# data/prepared/images.parquet: one row per image the adapter found.
IMAGES_SCHEMA = {"image_id": pl.String, "path": pl.String, "split": pl.String}
# data/prepared/metadata_raw.parquet: one row per raw metadata item (a tag, a group title, ...).
METADATA_RAW_SCHEMA = {"image_id": pl.String, "field": pl.String, "text": pl.String}
# data/prepared/labels.parquet: image_id, then one UInt8 0/1 column per label in label order.
SPLITS = ("train", "test")


@dataclass
class Prepared:
    """What an adapter read: image paths, labels (wide 0/1), raw metadata, optional split."""

    images: pl.DataFrame  # image_id, path (+ split when the dataset has an official split)
    labels: pl.DataFrame  # image_id + one UInt8 column per label
    metadata_raw: pl.DataFrame  # image_id, field, text
    label_names: list[str]
    notes: list[str] = field(default_factory=list)  # awkward input handled (logged by prepare, in stats.json)
    counts: dict[str, int] = field(default_factory=dict)  # adapter-specific counts (duplicates dropped, ...)
