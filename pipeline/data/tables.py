"""Tables shared by the training stages: the kept images with paths, splits and label matrix,
and the shared predictions format (image_id + one score column per label)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.schemas import IMAGES_FILE, IMAGES_SCHEMA, LABELS_FILE, labels_schema, predictions_schema
from pipeline.errors import MangoError
from pipeline.io import read_parquet, write_parquet
from pipeline.schemas import METADATA_SCHEMA


@dataclass
class LabelledImages:
    """Images kept by `lemmatise`, in its order, with paths, splits and 0/1 labels (N, C)."""

    image_ids: list[str]
    paths: list[str]
    splits: np.ndarray  # (N,) str
    targets: np.ndarray  # (N, C) uint8
    label_names: list[str]

    def select(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)


def load_annotated(prepared: Path, metadata: Path) -> LabelledImages:
    """Join prepared images/labels with the kept images of lemmatise's metadata.parquet."""
    images = read_parquet(prepared / IMAGES_FILE, IMAGES_SCHEMA)
    labels = read_parquet(prepared / LABELS_FILE, {"image_id": pl.String})
    kept = read_parquet(metadata, METADATA_SCHEMA).select("image_id")
    table = (kept.join(images.select("image_id", "path", "split"), on="image_id", how="left", maintain_order="left")
             .join(labels, on="image_id", how="left", maintain_order="left"))
    if table["path"].null_count():
        missing = table.filter(pl.col("path").is_null())["image_id"][0]
        raise MangoError(f"{metadata}: image '{missing}' is not in {prepared / IMAGES_FILE}")
    names = [c for c in labels.columns if c != "image_id"]
    return LabelledImages(
        image_ids=table["image_id"].to_list(),
        paths=table["path"].to_list(),
        splits=table["split"].to_numpy().astype(str),
        targets=table.select(names).to_numpy().astype(np.uint8),
        label_names=names,
    )


def predictions_frame(image_ids: list[str], scores: np.ndarray, label_names: list[str]) -> pl.DataFrame:
    """The predictions table (pipeline.schemas.predictions_schema) of scores (N, C) in label order."""
    if scores.shape != (len(image_ids), len(label_names)):
        raise ValueError(f"scores {scores.shape} do not match {len(image_ids)} images x {len(label_names)} labels")
    columns = {"image_id": image_ids, **{name: scores[:, j].astype(np.float32) for j, name in enumerate(label_names)}}
    return pl.DataFrame(columns, schema=predictions_schema(label_names))


ATTENTION_KEY = b"mango.attention"  # Parquet schema metadata of a predictions file: its attention statistics


def write_predictions(path: Path, image_ids: list[str], scores: np.ndarray, label_names: list[str],
                      attention: dict | None = None) -> None:
    """The shared predictions format: image_id + one float32 score in [0, 1] per label; `attention`
    (statistics of the model's attention maps on these images) rides in the schema metadata."""
    frame = predictions_frame(image_ids, scores, label_names)
    if attention is None:
        write_parquet(frame, path)
        return
    import json

    import pyarrow.parquet as pq

    from pipeline.io import atomic_path

    table = frame.to_arrow()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), ATTENTION_KEY: json.dumps(attention).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_attention_stats(path: Path) -> dict | None:
    """The attention statistics a predictions file carries, or None."""
    import json

    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[ATTENTION_KEY]) if ATTENTION_KEY in meta else None


def write_truth(path: Path, data: LabelledImages, split: str = "test") -> None:
    """The truth file for `mango evaluate`: image_id + one 0/1 column per label, one split."""
    rows = data.select(split)
    columns = {"image_id": [data.image_ids[i] for i in rows],
               **{name: data.targets[rows, j] for j, name in enumerate(data.label_names)}}
    df = pl.DataFrame(columns, schema=labels_schema(data.label_names))
    write_parquet(df, path)
