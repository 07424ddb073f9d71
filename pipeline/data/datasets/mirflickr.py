"""MIRFlickr-25k adapter (Huiskes & Lew 2008), the layout of the official distribution:

    <root>/mirflickr/im{N}.jpg                          N = 1 .. 25000
    <root>/mirflickr/meta/tags/tags{N}.txt              cleaned tags, one per line
    <root>/mirflickr/meta/tags_raw/tags{N}.txt          raw tags as typed by the owner
    <root>/mirflickr25k_annotations_v080/{label}.txt    1-based image numbers, one per line
    <root>/mirflickr25k_annotations_v080/{label}_r1.txt the "relevant" subset of that label

Label sets (`dataset.labels`), discovered from the annotation files present and sorted:
- potential: the non-`_r1` files among MIRFlickr's 24 potential labels;
- relevant:  the `_r1` files (14 in the official release), named without the suffix;
- all:       every annotation file that is not an `_r1` file (README excluded).
The embedded `synthetic` dataset is written in this layout and read by this same code.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.datasets.base import Prepared
from pipeline.errors import MangoError

log = logging.getLogger(__name__)

POTENTIAL_LABELS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake",
    "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures",
    "sunset", "transport", "tree", "water",
)
ANNOTATION_DIR = "mirflickr25k_annotations_v080"
IMAGE_RE = re.compile(r"^im(\d+)\.jpg$")


def _annotation_files(ann_dir: Path, label_set: str) -> dict[str, Path]:
    files = {p.stem: p for p in ann_dir.glob("*.txt") if p.stem.lower() != "readme"}
    if label_set == "relevant":
        chosen = {name[: -len("_r1")]: p for name, p in files.items() if name.endswith("_r1")}
    elif label_set == "potential":
        chosen = {name: p for name, p in files.items() if name in POTENTIAL_LABELS}
    elif label_set == "all":
        chosen = {name: p for name, p in files.items() if not name.endswith("_r1")}
    else:
        raise MangoError(f"dataset.labels must be potential, relevant or all, got '{label_set}'")
    if not chosen:
        raise MangoError(f"{ann_dir}: no annotation files for label set '{label_set}'")
    return dict(sorted(chosen.items()))


def _read_annotation(path: Path, existing: set[int]) -> list[int]:
    numbers = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
            raise MangoError(f"{path}, line {lineno}: '{text}' is not a positive image number")
        n = int(text)
        if n not in existing:
            raise MangoError(f"{path}, line {lineno}: image {n} does not exist (no im{n}.jpg)")
        numbers.append(n)
    return numbers


def _read_tags(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [t.strip() for t in path.read_text(errors="replace").splitlines() if t.strip()]


def read_mirflickr(root: str | Path, label_set: str = "potential", tags: str = "raw") -> Prepared:
    """Read a MIRFlickr-25k tree at `root` (tags: raw = meta/tags_raw, clean = meta/tags)."""
    root = Path(root)
    img_dir, ann_dir = root / "mirflickr", root / ANNOTATION_DIR
    if not root.is_dir():
        raise MangoError(f"dataset.root: '{root}' does not exist or is not a folder")
    for d in (img_dir, ann_dir):
        if not d.is_dir():
            raise MangoError(f"dataset.root: '{root}' is not a MIRFlickr-25k tree (missing {d.name}/)")
    numbers = sorted(int(m.group(1)) for p in img_dir.iterdir() if (m := IMAGE_RE.match(p.name)))
    if not numbers:
        raise MangoError(f"{img_dir}: no im<N>.jpg images")
    existing = set(numbers)
    files = _annotation_files(ann_dir, label_set)
    labels = np.zeros((len(numbers), len(files)), dtype=np.uint8)
    row_of = {n: i for i, n in enumerate(numbers)}
    for j, path in enumerate(files.values()):
        for n in _read_annotation(path, existing):
            labels[row_of[n], j] = 1
    ids = [str(n) for n in numbers]
    tag_dir = img_dir / "meta" / ("tags_raw" if tags == "raw" else "tags")
    meta_ids, meta_text = [], []
    for n, image_id in zip(numbers, ids):
        for tag in _read_tags(tag_dir / f"tags{n}.txt"):
            meta_ids.append(image_id)
            meta_text.append(tag)
    label_names = list(files)
    label_df = pl.DataFrame({"image_id": ids}).with_columns(
        pl.Series(name, labels[:, j], dtype=pl.UInt8) for j, name in enumerate(label_names)
    )
    images = pl.DataFrame({"image_id": ids, "path": [str(img_dir / f"im{n}.jpg") for n in numbers]})
    metadata_raw = pl.DataFrame(
        {"image_id": meta_ids, "field": ["tags"] * len(meta_ids), "text": meta_text},
        schema={"image_id": pl.String, "field": pl.String, "text": pl.String},
    )
    log.info("mirflickr: %d images, %d labels (%s), %d raw tags", len(ids), len(label_names), label_set, len(meta_ids))
    return Prepared(images=images, labels=label_df, metadata_raw=metadata_raw, label_names=label_names)
