"""The shared output of every dataset adapter (its tables' schemas: pipeline.schemas)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl



@dataclass
class Prepared:
    """What an adapter read: image paths, labels (wide 0/1), raw metadata, optional split."""

    images: pl.DataFrame  # image_id, path (+ split when the dataset has an official split)
    labels: pl.DataFrame  # image_id + one UInt8 column per label
    metadata_raw: pl.DataFrame  # image_id, field, text
    label_names: list[str]
    notes: list[str] = field(default_factory=list)  # awkward input handled (logged by prepare, in stats.json)
    counts: dict[str, int] = field(default_factory=dict)  # adapter-specific counts (duplicates dropped, ...)
