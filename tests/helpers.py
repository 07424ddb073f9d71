"""Tiny NUS-WIDE and MS-COCO 2014 trees written in exactly the official layouts, awkward parts included.

Shared by tests/test_nuswide.py, tests/test_coco.py and tests/test_adapters_e2e.py. Each image is
a small JPEG whose colour blocks follow its labels (so the end-to-end run has something to
learn); each image's tags / captions name its labels plus noise (so metadata neighbours share
labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40), (200, 60, 220), (40, 210, 210)]
WORDS = {  # label -> words a Flickr user / a COCO annotator would use for it
    "sky": ["Sky", "skies", "clouds"], "dog": ["dogs", "puppy", "Dog"], "lake": ["lakes", "water", "shore"],
    "person": ["a man", "people", "woman"], "car": ["cars", "a red car", "street"],
    "toothbrush": ["toothbrush", "brushing teeth"], "traffic light": ["traffic lights", "a signal"],
}
NOISE = ["nikon", "explore", "2008", "canon", "vacation", "the", "of", "john_smith123", "photo"]


def _jpeg(path: Path, labels: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """A noisy grey square with one coloured block per positive label."""
    img = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
    half = size // 2
    for j in np.flatnonzero(labels):
        y, x = (j // 2 % 2) * half, (j % 2) * half
        img[y:y + half, x:x + half] = COLOURS[j % len(COLOURS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def _labels(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """(n, c) 0/1, every image at least one label; images come in topics of 4 sharing labels."""
    topics = (rng.random((n // 4 + 1, c)) < 0.4).astype(np.uint8)
    topics[np.arange(len(topics)), rng.integers(0, c, len(topics))] = 1
    return topics[np.arange(n) // 4]


def _words(rng: np.random.Generator, names: list[str], row: np.ndarray, k: int) -> list[str]:
    out = [str(rng.choice(WORDS.get(names[j], [names[j]]))) for j in np.flatnonzero(row)]
    return out + [str(w) for w in rng.choice(NOISE, k, replace=False)]


@dataclass
class NusWide:
    root: Path
    ids: list[str]  # photo id per Imagelist line
    folders: list[str]
    labels: np.ndarray  # (lines, C) as written (the stray line's value counts as 0)
    concepts: list[str]
    split: list[str]
    tags: list[list[str]]
    notes: dict = field(default_factory=dict)


def write_nuswide(root: Path, n: int = 12, concepts: tuple[str, ...] = ("sky", "dog", "lake"), seed: int = 0,
                  size: int = 32, duplicate: bool = True, stray: bool = True, prefix_line: bool = True) -> NusWide:
    """An official NUS-WIDE tree: ImageList/, ConceptsList/Concepts81.txt, Groundtruth/AllLabels/,
    NUS_WID_Tags/All_Tags.txt, Flickr/<folder>/<nnnn>_<photo id>.jpg. Lines use Windows paths.

    duplicate: the last line repeats line 2's photo id (another folder, other labels);
    stray: line 3 of the last concept's label file is `-1130179` (the known NUS-WIDE glitch);
    prefix_line: line 1 carries the `C:\\ImageData\\Flickr\\` prefix of the crawl lists.
    """
    rng = np.random.default_rng(seed)
    concepts = list(concepts)
    lines = n + (1 if duplicate else 0)
    ids = [str(2124494179 + 7919 * i) for i in range(n)]
    folders = [["actor", "animal", "beach"][i % 3] for i in range(n)]
    labels = _labels(rng, lines, len(concepts))
    if duplicate:
        ids.append(ids[1])
        folders.append("zebra")
    split = ["train" if i % 2 == 0 else "test" for i in range(lines)]
    rel = [f"{folders[i]}\\{i + 1:04d}_{ids[i]}.jpg" for i in range(lines)]
    for i in range(lines):
        _jpeg(root / "Flickr" / folders[i] / f"{i + 1:04d}_{ids[i]}.jpg", labels[i], rng, size)
    listed = [("C:\\ImageData\\Flickr\\" + r) if (i == 0 and prefix_line) else r for i, r in enumerate(rel)]
    (root / "ImageList").mkdir(parents=True)
    (root / "ImageList" / "Imagelist.txt").write_text("\r\n".join(listed) + "\r\n")
    for name, which in (("TrainImagelist.txt", "train"), ("TestImagelist.txt", "test")):
        (root / "ImageList" / name).write_text("".join(f"{r}\r\n" for r, s in zip(rel, split) if s == which))
    (root / "ConceptsList").mkdir()
    (root / "ConceptsList" / "Concepts81.txt").write_text("".join(f"{c}\r\n" for c in concepts))
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True)
    for j, c in enumerate(concepts):
        values = [str(v) for v in labels[:, j]]
        if stray and j == len(concepts) - 1:
            values[2] = "-1130179"
            labels[2, j] = 0
        (root / "Groundtruth" / "AllLabels" / f"Labels_{c}.txt").write_text("".join(f"{v}\n" for v in values))
    tags = [[w.lower().replace(" ", "") for w in _words(rng, concepts, labels[i], 2)] for i in range(lines)]
    (root / "NUS_WID_Tags").mkdir()
    (root / "NUS_WID_Tags" / "All_Tags.txt").write_text(
        "".join(f"{ids[i]}      {' '.join(tags[i])}\n" for i in range(lines)))
    return NusWide(root, ids, folders, labels, concepts, split, tags)


def write_groups(path: Path, rows: dict[str, list[str]], shards: int = 2) -> Path:
    """A `mango crawl`-style Parquet dataset: photo_id, status, tags, groups, title, description."""
    path.mkdir(parents=True)
    items = list(rows.items())
    for s in range(shards):
        part = items[s::shards]
        pl.DataFrame({
            "photo_id": [p for p, _ in part],
            "status": ["ok" if g else "not_found" for _, g in part],
            "tags": [["x"] for _ in part],
            "groups": [g for _, g in part],
            "title": ["t"] * len(part),
            "description": [""] * len(part),
        }, schema={"photo_id": pl.String, "status": pl.String, "tags": pl.List(pl.String),
                   "groups": pl.List(pl.String), "title": pl.String, "description": pl.String},
        ).write_parquet(path / f"part-{s:04d}.parquet")
    return path


# Non-contiguous ids, listed out of order in the json (the adapter sorts them by id).
COCO_CATEGORIES = [(18, "dog", "animal"), (1, "person", "person"), (10, "traffic light", "outdoor"),
                   (3, "car", "vehicle"), (90, "toothbrush", "indoor")]


@dataclass
class Coco:
    root: Path
    ids: dict[str, list[int]]  # coco split -> image ids (json order)
    labels: dict[int, np.ndarray]  # image id -> (C,) in sorted-category order
    captions: dict[int, list[str]]
    unannotated: list[int]


def write_coco(root: Path, n_train: int = 8, n_val: int = 6, seed: int = 0, size: int = 32,
               unannotated: bool = True) -> Coco:
    """An official MS-COCO 2014 tree: annotations/{instances,captions}_{train,val}2014.json and
    train2014/, val2014/ with COCO_<split>_%012d.jpg. With `unannotated`, the second train image
    has captions but no instance annotation. Some annotations are crowd ones."""
    rng = np.random.default_rng(seed)
    cats_sorted = sorted(COCO_CATEGORIES)
    names = [c[1] for c in cats_sorted]
    (root / "annotations").mkdir(parents=True)
    ids, all_labels, all_caps, empty = {}, {}, {}, []
    ann_id = 1
    next_id = 9
    for split, count in (("train2014", n_train), ("val2014", n_val)):
        labels = _labels(rng, count, len(names))
        images, inst, caps = [], [], []
        ids[split] = []
        for i in range(count):
            image_id = next_id
            next_id += int(rng.integers(1, 50))
            file_name = f"COCO_{split}_{image_id:012d}.jpg"
            images.append({"license": 1, "file_name": file_name, "height": size, "width": size, "id": image_id})
            ids[split].append(image_id)
            row = labels[i].copy()
            if unannotated and split == "train2014" and i == 1:
                row[:] = 0
                empty.append(image_id)
            for j in np.flatnonzero(row):
                for _ in range(int(rng.integers(1, 3))):  # one or two instances of the category
                    inst.append({"id": ann_id, "image_id": image_id, "category_id": cats_sorted[j][0],
                                 "iscrowd": int(rng.random() < 0.2), "area": 10.0, "bbox": [0, 0, 4, 4],
                                 "segmentation": []})
                    ann_id += 1
            texts = [f"{' and '.join(_words(rng, names, labels[i], 1))} in a picture" for _ in range(3)]
            for t in texts:
                caps.append({"image_id": image_id, "id": ann_id, "caption": t})
                ann_id += 1
            all_labels[image_id], all_caps[image_id] = row, texts
            _jpeg(root / split / file_name, labels[i], rng, size)
        categories = [{"supercategory": s, "id": cid, "name": nm} for cid, nm, s in COCO_CATEGORIES]
        info = {"description": "tiny COCO 2014 fixture", "year": 2014}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"info": info, "images": images, "licenses": [], "annotations": inst, "categories": categories}))
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(
            {"info": info, "images": images, "licenses": [], "annotations": caps}))
    return Coco(root, ids, all_labels, all_caps, empty)


# --- neighbour-search inputs and outputs -----------------------------------------------------------

def frame(ids, splits, terms, **extra) -> pl.DataFrame:
    """A metadata.parquet frame (image_id, split, terms) plus list-of-strings columns `extra`."""
    schema = {"image_id": pl.String, "split": pl.String, "terms": pl.List(pl.String)}
    schema.update({name: pl.List(pl.String) for name in extra})
    return pl.DataFrame({"image_id": ids, "split": splits, "terms": terms, **extra}, schema=schema)


def by_image(out: pl.DataFrame) -> dict[str, list[tuple[str, float]]]:
    """image_id -> [(neighbour_id, score), ...] in rank order, from a neighbours frame."""
    got: dict[str, list[tuple[str, float]]] = {}
    for row in out.iter_rows(named=True):
        got.setdefault(row["image_id"], []).append((row["neighbour_id"], row["score"]))
    return got


def to_csr(sets: list[set], width: int | None = None) -> sp.csr_matrix:
    """(n, width) binary matrix of integer term sets (width: one past the largest term by default)."""
    width = max((max(s) for s in sets if s), default=-1) + 1 if width is None else width
    rows = [i for i, s in enumerate(sets) for _ in s]
    cols = [t for s in sets for t in sorted(s)]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), width))
