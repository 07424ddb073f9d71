"""Every Parquet table the pipeline writes or reads, in one place: column names and types.

Stage folders (`data/prepared`, `data/interim`, the feature store) hold files under the names
below; dvc.yaml names the folders and the single-file outputs, code names only these constants.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

SPLITS = ("train", "test")
# The eight metrics of every method (reports/metrics.json, `mango evaluate`), in the paper's order.
METRIC_KEYS = ("mAPC", "mAPO", "CP", "CR", "CF1", "OP", "OR", "OF1")

# data/prepared/images.parquet: one row per image the adapter found.
IMAGES_FILE = "images.parquet"
IMAGES_SCHEMA = {"image_id": pl.String, "path": pl.String, "split": pl.String}
# data/prepared/metadata_raw.parquet: one row per raw metadata item (a tag, a group title, ...).
METADATA_RAW_FILE = "metadata_raw.parquet"
METADATA_RAW_SCHEMA = {"image_id": pl.String, "field": pl.String, "text": pl.String}
# data/prepared/labels.parquet: image_id, then one UInt8 0/1 column per label in label order.
LABELS_FILE = "labels.parquet"

# data/interim/metadata.parquet (`lemmatise`): the kept images and their vocabulary terms.
METADATA_FILE = "metadata.parquet"
METADATA_SCHEMA = {"image_id": pl.String, "split": pl.String, "terms": pl.List(pl.String)}
# data/interim/vocab.parquet: the vocabulary T, most frequent first.
VOCAB_FILE = "vocab.parquet"
VOCAB_SCHEMA = {"term": pl.String, "images": pl.UInt32, "rank": pl.UInt32}

# data/processed/neighbours.parquet: one row per (image, neighbour), rank 1 = most similar.
NEIGHBOURS_SCHEMA = {"image_id": pl.String, "rank": pl.Int32, "neighbour_id": pl.String, "score": pl.Float64}

# <feature store>/index.parquet: the store row of every image.
INDEX_FILE = "index.parquet"
INDEX_SCHEMA = {"image_id": pl.String, "split": pl.String, "row": pl.Int64}

# `mango annotate --input NEW.parquet`: the new photos, each with its owner's raw tags.
ANNOTATE_INPUT_SCHEMA = {"image_id": pl.String, "path": pl.String, "tags": pl.List(pl.String)}

# The crawl (`mango crawl`): one row per photo id. not_found and error rows keep title..longitude null
# (partial rows keep getInfo's fields, groups null); error and partial rows say why.
CRAWL_SCHEMA: dict[str, pl.DataType] = {
    "photo_id": pl.String(),
    "status": pl.String(),  # ok | not_found | error | partial (getInfo's fields, groups null: no getAllContexts)
    "title": pl.String(),
    "description": pl.String(),
    "tags": pl.List(pl.String()),  # raw tags, as the owner typed them, in Flickr's order
    "groups": pl.List(pl.String()),  # titles of the photo's sets, then of its group pools
    "owner": pl.String(),  # owner NSID
    "owner_name": pl.String(),
    "location": pl.String(),  # "locality, region, country" where geotagged
    "latitude": pl.Float64(),
    "longitude": pl.Float64(),
    "error_code": pl.String(),  # flickr-<code> | http-<status> | timeout | connection | malformed-json | ...
    "error_message": pl.String(),
    "attempts": pl.Int32(),  # HTTP calls spent on the photo in the run that finished it
}


def labels_schema(label_names: Sequence[str]) -> dict[str, pl.DataType]:
    """labels.parquet and the truth file of `mango evaluate`: image_id + one UInt8 0/1 column per label."""
    return {"image_id": pl.String, **{name: pl.UInt8 for name in label_names}}


def predictions_schema(label_names: Sequence[str]) -> dict[str, pl.DataType]:
    """data/predictions/<method>.parquet: image_id + one Float32 score in [0, 1] per label, label order."""
    return {"image_id": pl.String, **{name: pl.Float32 for name in label_names}}
