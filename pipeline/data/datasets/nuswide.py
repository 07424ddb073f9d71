"""NUS-WIDE adapter (Chua et al. 2009), the layout of the official distribution under `root`:

    <root>/ImageList/Imagelist.txt            one image per line (269,648), a Windows path relative
                                              to the image folder: `actor\\0001_2124494179.jpg`
    <root>/ImageList/TrainImagelist.txt       the official train split (161,789 lines), same format
    <root>/ImageList/TestImagelist.txt        the official test split (107,859 lines), same format
    <root>/ConceptsList/Concepts81.txt        the 81 concepts, one per line: the label order
                                              (`<root>/Concepts81.txt` is accepted too)
    <root>/Groundtruth/AllLabels/Labels_<concept>.txt   one 0/1 per line, in Imagelist order
    <root>/NUS_WID_Tags/All_Tags.txt          `<photo id> tag tag ...` per line, in Imagelist order
    <root>/Flickr/<folder>/<file>.jpg         the images (sent by the NUS lab on request), 704
                                              folders named as in Imagelist.txt

What is assumed about the lists (checked against public readers of the distribution):
- A list line is a Windows path; only its last two components (`<folder>\\<file>`) are used, so
  the `C:\\ImageData\\Flickr\\` prefix found in some copies (and in NUS-WIDE-urls.txt) is harmless.
- The image id is the Flickr photo id: the file name's part after its last `_`, without the
  extension (`0001_2124494179.jpg` -> `2124494179`). Line i of All_Tags.txt must carry that id.
- Train/Test lists are matched to Imagelist by that relative path.

Awkward parts of the real files, never used silently:
- a photo id listed twice: the first line is kept (its labels, tags, split), later ones are
  dropped; counted, logged and recorded in `notes` (-> prepare's stats.json);
- a label line that is not 0 or 1 (the known case: `-1130179` at line 78,372 of
  TrainTestLabels/Labels_lake_Train.txt, a file this adapter does not read; AllLabels is
  checked the same way): treated as 0 (not annotated = negative), counted per file, the first
  few logged with file and line;
- a label file or All_Tags.txt whose line count differs from Imagelist: MangoError naming the
  file and both counts (the order is the only join key, so a shifted file would mislabel all);
- a concept of Concepts81.txt without its label file: MangoError;
- an image in neither split list: dropped and counted; in both: MangoError.

Optional Flickr groups (`dataset.groups`): a Parquet dataset (a folder of .parquet files, or one
file) written by `mango crawl`, with columns photo_id, status, tags, groups, title, description;
`groups` holds the titles of the groups a photo was posted to (a list of strings; a list of
structs with a `title` or `name` field is accepted too). Each title becomes one metadata_raw row
with field "groups"; tags stay the distribution's own (field "tags").
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
from pipeline.progress import progress

from pipeline.data.datasets.base import Prepared
from pipeline.schemas import METADATA_RAW_SCHEMA
from pipeline.errors import MangoError

log = logging.getLogger(__name__)

IMAGE_LIST = "ImageList/Imagelist.txt"
TRAIN_LIST = "ImageList/TrainImagelist.txt"
TEST_LIST = "ImageList/TestImagelist.txt"
CONCEPTS = ("ConceptsList/Concepts81.txt", "Concepts81.txt")
LABEL_DIR = "Groundtruth/AllLabels"
TAGS = "NUS_WID_Tags/All_Tags.txt"
IMAGE_DIR = "Flickr"
EXAMPLES = 5  # how many offending lines a note names


def _lines(path: Path) -> list[str]:
    """The file's lines, right-stripped (CR/LF, spaces); trailing empty lines dropped."""
    if not path.is_file():
        raise MangoError(f"{path}: missing (expected in the official NUS-WIDE layout)")
    lines = [line.rstrip() for line in path.read_text(errors="replace").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def relative_path(line: str) -> str:
    """`actor\\0001_2124494179.jpg` (or with a `C:\\ImageData\\Flickr\\` prefix) -> `actor/0001_2124494179.jpg`."""
    parts = [p for p in line.strip().replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:])


def photo_id(rel_path: str) -> str | None:
    """The Flickr photo id of `actor/0001_2124494179.jpg`: `2124494179`; None if not digits."""
    stem = rel_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    pid = stem.rsplit("_", 1)[-1]
    return pid if pid.isdigit() else None


def read_label_file(path: Path, expected: int) -> tuple[np.ndarray, list[int]]:
    """One concept's 0/1 column (expected,) uint8 and the 1-based numbers of malformed lines (read as 0)."""
    if not path.is_file():
        raise MangoError(f"{path}: missing label file for a concept listed in Concepts81.txt")
    lines = path.read_bytes().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != expected:
        raise MangoError(f"{path}: {len(lines)} lines, but {IMAGE_LIST} lists {expected} images "
                         "(label files must have one line per image, in image-list order)")
    values = np.char.strip(np.array(lines, dtype=bytes)) if lines else np.array([], dtype="S1")
    ones, zeros = values == b"1", values == b"0"
    bad = np.flatnonzero(~(ones | zeros)) + 1
    return ones.astype(np.uint8), bad.tolist()


def _concepts(root: Path) -> tuple[Path, list[str]]:
    for rel in CONCEPTS:
        if (root / rel).is_file():
            names = [c.strip() for c in _lines(root / rel)]
            if "" in names:
                raise MangoError(f"{root / rel}, line {names.index('') + 1}: empty concept name")
            dup = [c for c, n in Counter(names).items() if n > 1]
            if dup:
                raise MangoError(f"{root / rel}: concept '{dup[0]}' is listed more than once")
            return root / rel, names
    raise MangoError(f"dataset.root '{root}': no {CONCEPTS[0]} (nor {CONCEPTS[1]}): not a NUS-WIDE tree")


def _split_of(root: Path, rel_paths: list[str]) -> tuple[list[str | None], int]:
    """'train' / 'test' / None per image from the official lists; also the count of unknown list lines."""
    where: dict[str, str] = {}
    unknown = 0
    known = set(rel_paths)
    for split, rel in (("train", TRAIN_LIST), ("test", TEST_LIST)):
        for lineno, line in enumerate(_lines(root / rel), start=1):
            if not line.strip():
                continue
            key = relative_path(line)
            if key not in known:
                unknown += 1
                continue
            if where.get(key, split) != split:
                raise MangoError(f"{root / rel}, line {lineno}: '{line.strip()}' is also in {TRAIN_LIST}; "
                                 "an image must be in exactly one official split")
            where[key] = split
    return [where.get(r) for r in rel_paths], unknown


def _read_groups(path: Path, ids: set[str]) -> tuple[pl.DataFrame, dict]:
    """metadata_raw rows (field 'groups') from a `mango crawl` Parquet dataset, and counts."""
    if not path.exists():
        raise MangoError(f"dataset.groups: '{path}' does not exist (a Parquet dataset written by `mango crawl`, or empty)")
    source = str(path / "*.parquet") if path.is_dir() else str(path)  # the shards part-NNNNN.parquet
    try:
        crawl = pl.scan_parquet(source)
        schema = crawl.collect_schema()
    except Exception as exc:  # polars raises several types for unreadable / empty datasets
        raise MangoError(f"dataset.groups: '{path}' is not a readable Parquet dataset ({exc})") from None
    for col in ("photo_id", "groups"):
        if col not in schema:
            raise MangoError(f"dataset.groups: '{path}' has no column '{col}' (columns: {', '.join(schema.names())})")
    gtype = schema["groups"]
    if not isinstance(gtype, pl.List):
        raise MangoError(f"dataset.groups: '{path}' column 'groups' has type {gtype}, expected a list of group titles")
    inner = gtype.inner
    if isinstance(inner, pl.Struct):
        names = [f.name for f in inner.fields]
        field = next((f for f in ("title", "name") if f in names), None)
        if field is None:
            raise MangoError(f"dataset.groups: '{path}' groups are structs without a 'title' or 'name' field ({names})")
        title = pl.col("groups").struct.field(field)
    elif inner == pl.String:
        title = pl.col("groups")
    else:
        raise MangoError(f"dataset.groups: '{path}' column 'groups' is a list of {inner}, expected strings")
    rows = (
        crawl.select(pl.col("photo_id").cast(pl.String).str.strip_chars(), "groups")
        .explode("groups")
        .select(pl.col("photo_id").alias("image_id"), title.cast(pl.String).str.strip_chars().alias("text"))
        .filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
        .unique(maintain_order=True)
        .collect()
    )
    crawled = crawl.select(pl.col("photo_id").cast(pl.String).str.strip_chars()).unique().collect()["photo_id"]
    outside = rows.filter(~pl.col("image_id").is_in(list(ids)))
    rows = rows.filter(pl.col("image_id").is_in(list(ids)))
    counts = {
        "crawled_photos": crawled.len(),
        "crawled_photos_not_in_image_list": int((~crawled.is_in(list(ids))).sum()),
        "group_rows_ignored_not_in_image_list": outside.height,
        "images_with_groups": rows["image_id"].n_unique(),
        "group_rows": rows.height,
    }
    frame = rows.select("image_id", pl.lit("groups").alias("field"), "text")
    return frame, counts


def read_nuswide(root: str | Path, groups: str = "") -> Prepared:
    """Read a NUS-WIDE tree at `root`; `groups`: a `mango crawl` Parquet dataset, or '' for none."""
    root = Path(root)
    if not root.is_dir():
        raise MangoError(f"dataset.root: '{root}' does not exist or is not a folder")
    if not (root / IMAGE_LIST).is_file():
        raise MangoError(f"dataset.root: '{root}' is not a NUS-WIDE tree (missing {IMAGE_LIST})")
    notes: list[str] = []
    lines = _lines(root / IMAGE_LIST)
    n = len(lines)
    rel_paths, ids = [], []
    for lineno, line in enumerate(lines, start=1):
        rel = relative_path(line)
        pid = photo_id(rel)
        if not rel or pid is None:
            raise MangoError(f"{root / IMAGE_LIST}, line {lineno}: '{line}' is not '<folder>\\<n>_<photo id>.jpg'")
        rel_paths.append(rel)
        ids.append(pid)
    if n == 0:
        raise MangoError(f"{root / IMAGE_LIST}: no image listed")

    # First occurrence of each photo id wins; the rest are dropped (rows of every per-line file).
    first: dict[str, int] = {}
    dup_lines: list[int] = []
    for i, pid in enumerate(ids):
        if pid in first:
            dup_lines.append(i)
        else:
            first[pid] = i
    keep = np.ones(n, dtype=bool)
    keep[dup_lines] = False
    if dup_lines:
        examples = ", ".join(f"line {i + 1} ({ids[i]}, first at line {first[ids[i]] + 1})" for i in dup_lines[:EXAMPLES])
        notes.append(f"{root / IMAGE_LIST}: {len(dup_lines)} duplicate photo id(s) dropped, first occurrence kept: {examples}")

    concepts_path, concepts = _concepts(root)
    labels = np.zeros((n, len(concepts)), dtype=np.uint8)  # (N, C)
    malformed = 0
    for j, concept in enumerate(progress(concepts, desc="nuswide: label files", unit="file")):
        path = root / LABEL_DIR / f"Labels_{concept}.txt"
        labels[:, j], bad = read_label_file(path, n)
        if bad:
            malformed += len(bad)
            shown = ", ".join(f"line {k}" for k in bad[:EXAMPLES])
            notes.append(f"{path}: {len(bad)} line(s) neither 0 nor 1, read as 0 ({shown})")

    tag_lines = _lines(root / TAGS)
    if len(tag_lines) != n:
        raise MangoError(f"{root / TAGS}: {len(tag_lines)} lines, but {IMAGE_LIST} lists {n} images "
                         "(All_Tags.txt must have one line per image, in image-list order)")
    meta_ids, meta_text = [], []
    for i, line in enumerate(tag_lines):
        fields = line.split()
        if not fields or fields[0] != ids[i]:
            got = fields[0] if fields else "nothing"
            raise MangoError(f"{root / TAGS}, line {i + 1}: photo id {got}, but line {i + 1} of {IMAGE_LIST} "
                             f"is photo {ids[i]} (the files must be in the same order)")
        if keep[i]:
            meta_ids.extend([ids[i]] * (len(fields) - 1))
            meta_text.extend(fields[1:])

    split, unknown = _split_of(root, rel_paths)
    no_split = [i for i in range(n) if keep[i] and split[i] is None]
    if no_split:
        keep[no_split] = False
        notes.append(f"{len(no_split)} image(s) of {IMAGE_LIST} are in neither {TRAIN_LIST} nor {TEST_LIST}: dropped "
                     f"(e.g. line {no_split[0] + 1}, {rel_paths[no_split[0]]})")
    if unknown:
        notes.append(f"{unknown} line(s) of {TRAIN_LIST} / {TEST_LIST} name no image of {IMAGE_LIST}: ignored")

    rows = np.flatnonzero(keep)
    kept_ids = [ids[i] for i in rows]
    images = pl.DataFrame({
        "image_id": kept_ids,
        "path": [str(root / IMAGE_DIR / rel_paths[i]) for i in rows],
        "split": [split[i] for i in rows],
    }, schema={"image_id": pl.String, "path": pl.String, "split": pl.String})
    label_df = pl.DataFrame({"image_id": kept_ids}).with_columns(
        pl.Series(name, labels[rows, j], dtype=pl.UInt8) for j, name in enumerate(concepts)
    )
    metadata_raw = pl.DataFrame({"image_id": meta_ids, "field": ["tags"] * len(meta_ids), "text": meta_text},
                                schema=METADATA_RAW_SCHEMA)
    group_counts: dict = {}
    if groups:
        group_rows, group_counts = _read_groups(Path(groups), set(kept_ids))
        metadata_raw = pl.concat([metadata_raw, group_rows.cast(METADATA_RAW_SCHEMA)])
        log.info("nuswide: groups from %s: %s", groups, group_counts)
        if group_counts["crawled_photos_not_in_image_list"]:
            notes.append(f"dataset.groups '{groups}': {group_counts['crawled_photos_not_in_image_list']} crawled photo(s) "
                         f"are not in {IMAGE_LIST} (or were dropped): ignored")
    counts = {"listed": n, "duplicate_ids_dropped": len(dup_lines), "malformed_label_lines": malformed,
              "not_in_a_split_dropped": len(no_split), "split_list_lines_unknown": unknown, **group_counts}
    log.info("nuswide: %d images (%d duplicate ids dropped, %d malformed label lines read as 0), %d concepts from %s, "
             "%d raw metadata items", len(kept_ids), len(dup_lines), malformed, len(concepts), concepts_path,
             metadata_raw.height)
    return Prepared(images=images, labels=label_df, metadata_raw=metadata_raw, label_names=concepts, notes=notes,
                    counts=counts)
