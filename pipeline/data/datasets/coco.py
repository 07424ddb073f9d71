"""MS-COCO 2014 adapter (Lin et al. 2014), the layout of the official distribution under `root`:

    <root>/annotations/instances_train2014.json   images, categories, instance annotations
    <root>/annotations/instances_val2014.json
    <root>/annotations/captions_train2014.json    five-ish human captions per image
    <root>/annotations/captions_val2014.json
    <root>/train2014/COCO_train2014_000000000009.jpg   named by each image's `file_name`
    <root>/val2014/COCO_val2014_000000000042.jpg

- Split: the official one, as in the paper (section 4.1): train2014 -> train, val2014 -> test.
- Labels: the 80 categories. Their ids are not contiguous (1..90 with gaps); the label order is
  the categories sorted by id, and the label names are the category names ("person", "bicycle",
  ..., "toothbrush"; some contain a space, e.g. "traffic light"). Both files must list the same
  categories. An image has a label when any instance annotation of that category lies on it
  (crowd annotations included: they too say the category is present).
- Metadata: every caption becomes one metadata_raw row with field "caption"; `lemmatise`
  tokenises them like tags, so the Jaccard neighbour search runs on caption terms.
- Image ids: COCO's integer ids as strings (unique across train2014 and val2014; checked).
- Images without any instance annotation (about 1% of COCO 2014) are dropped and counted; an
  image without captions is kept here and dropped, counted, by `lemmatise`.

Each instances file is loaded whole with the json module (train2014: ~330 MB on disk, a few GB
in memory while parsing), which one machine of the paper's size affords.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.datasets.base import Prepared
from pipeline.schemas import METADATA_RAW_SCHEMA
from pipeline.errors import MangoError

log = logging.getLogger(__name__)

SPLITS = (("train2014", "train"), ("val2014", "test"))  # (COCO split, our split)


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise MangoError(f"{path}: missing (expected in the official MS-COCO 2014 layout)")
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MangoError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MangoError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    return data


def _records(data: dict, key: str, fields: tuple[str, ...], path: Path) -> list[dict]:
    """data[key], checking that each record is an object holding `fields`."""
    items = data.get(key)
    if not isinstance(items, list):
        raise MangoError(f"{path}: no '{key}' list")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or any(f not in item for f in fields):
            raise MangoError(f"{path}: {key}[{i}] lacks one of {', '.join(fields)}")
    return items


def _categories(data: dict, path: Path) -> list[tuple[int, str]]:
    """(id, name) sorted by id: the label order."""
    cats = sorted((int(c["id"]), str(c["name"])) for c in _records(data, "categories", ("id", "name"), path))
    ids = [c[0] for c in cats]
    if len(set(ids)) != len(ids):
        raise MangoError(f"{path}: a category id is listed twice")
    names = [c[1] for c in cats]
    if len(set(names)) != len(names) or "image_id" in names:
        raise MangoError(f"{path}: category names must be distinct and not 'image_id'")
    if not cats:
        raise MangoError(f"{path}: no categories")
    return cats


def _read_split(root: Path, coco_split: str, split: str, categories: list[tuple[int, str]] | None):
    """One COCO split -> (image ids, paths, labels (N, C) uint8, caption rows, categories, dropped count)."""
    inst_path = root / "annotations" / f"instances_{coco_split}.json"
    cap_path = root / "annotations" / f"captions_{coco_split}.json"
    inst = _load_json(inst_path)
    cats = _categories(inst, inst_path)
    if categories is not None and cats != categories:
        raise MangoError(f"{inst_path}: categories differ from those of instances_{SPLITS[0][0]}.json")
    column = {cid: j for j, (cid, _) in enumerate(cats)}
    images = _records(inst, "images", ("id", "file_name"), inst_path)
    row = {}
    for i, im in enumerate(images):
        if int(im["id"]) in row:
            raise MangoError(f"{inst_path}: image id {im['id']} is listed twice")
        row[int(im["id"])] = i
    labels = np.zeros((len(images), len(cats)), dtype=np.uint8)  # (N, C)
    for k, ann in enumerate(_records(inst, "annotations", ("image_id", "category_id"), inst_path)):
        r, c = row.get(int(ann["image_id"])), column.get(int(ann["category_id"]))
        if r is None:
            raise MangoError(f"{inst_path}: annotations[{k}] refers to image {ann['image_id']}, which is not in 'images'")
        if c is None:
            raise MangoError(f"{inst_path}: annotations[{k}] has category_id {ann['category_id']}, "
                             f"not among the {len(cats)} categories")
        labels[r, c] = 1
    del inst
    annotated = labels.any(axis=1)
    ids = [str(im["id"]) for im in images]
    paths = [str(root / coco_split / im["file_name"]) for im in images]
    keep = np.flatnonzero(annotated)

    caps = _load_json(cap_path)
    cap_ids, cap_text, stray = [], [], 0
    for k, ann in enumerate(_records(caps, "annotations", ("image_id", "caption"), cap_path)):
        r = row.get(int(ann["image_id"]))
        if r is None:
            stray += 1
            continue
        if annotated[r]:
            cap_ids.append(ids[r])
            cap_text.append(str(ann["caption"]).strip())
    dropped = len(images) - len(keep)
    log.info("coco %s: %d images, %d without instance annotations dropped, %d captions", coco_split,
             len(images), dropped, len(cap_ids))
    return ([ids[i] for i in keep], [paths[i] for i in keep], [split] * len(keep), labels[keep], cap_ids, cap_text,
            cats, dropped, stray)


def read_coco(root: str | Path) -> Prepared:
    """Read an MS-COCO 2014 tree at `root` (official train2014 = train, val2014 = test)."""
    root = Path(root)
    if not root.is_dir():
        raise MangoError(f"dataset.root: '{root}' does not exist or is not a folder")
    if not (root / "annotations").is_dir():
        raise MangoError(f"dataset.root: '{root}' is not an MS-COCO 2014 tree (missing annotations/)")
    ids, paths, splits, label_blocks, cap_ids, cap_text = [], [], [], [], [], []
    categories, notes, counts = None, [], {}
    for coco_split, split in SPLITS:
        s_ids, s_paths, s_splits, s_labels, s_cap_ids, s_cap_text, categories, dropped, stray = \
            _read_split(root, coco_split, split, categories)
        ids += s_ids
        paths += s_paths
        splits += s_splits
        label_blocks.append(s_labels)
        cap_ids += s_cap_ids
        cap_text += s_cap_text
        counts[f"{coco_split}_no_instances_dropped"] = dropped
        counts[f"{coco_split}_kept"] = len(s_ids)
        if dropped:
            notes.append(f"instances_{coco_split}.json: {dropped} image(s) without any instance annotation dropped")
        if stray:
            counts[f"{coco_split}_captions_of_unknown_images"] = stray
            notes.append(f"captions_{coco_split}.json: {stray} caption(s) of images not in instances_{coco_split}.json: ignored")
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise MangoError(f"{root / 'annotations'}: image id {dup} is in both train2014 and val2014")
    if not ids:
        raise MangoError(f"dataset.root '{root}': no image with an instance annotation")
    names = [name for _, name in categories]
    labels = np.concatenate(label_blocks)  # (N, C)
    images = pl.DataFrame({"image_id": ids, "path": paths, "split": splits},
                          schema={"image_id": pl.String, "path": pl.String, "split": pl.String})
    label_df = pl.DataFrame({"image_id": ids}).with_columns(
        pl.Series(name, labels[:, j], dtype=pl.UInt8) for j, name in enumerate(names)
    )
    metadata_raw = pl.DataFrame({"image_id": cap_ids, "field": ["caption"] * len(cap_ids), "text": cap_text},
                                schema=METADATA_RAW_SCHEMA)
    log.info("coco: %d images, %d categories (sorted by id %d..%d), %d captions", len(ids), len(names),
             categories[0][0], categories[-1][0], len(cap_ids))
    return Prepared(images=images, labels=label_df, metadata_raw=metadata_raw, label_names=names, notes=notes,
                    counts=counts)
