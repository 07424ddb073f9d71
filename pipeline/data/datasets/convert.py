"""Real human-tagged picture collections that install here, written in the MIRFlickr-25k layout.

`convert(source, out)` writes the tree that `pipeline.data.datasets.mirflickr.read_mirflickr` reads:

    <out>/mirflickr/im{N}.jpg                         N = 1 .., RGB JPEG, --size square
    <out>/mirflickr/meta/tags_raw/tags{N}.txt         one raw tag per line, as found
    <out>/mirflickr/meta/tags/tags{N}.txt             the same, lower-cased
    <out>/mirflickr25k_annotations_v080/{label}.txt   1-based image numbers
    <out>/SOURCE.txt                                  source, licence, options and counts

so the whole pipeline runs on it with `dataset.root=<out> dataset.labels=all`. Sources:

- `folders`: a folder whose sub-folders (any depth) are categories; each image may have a sidecar
  `<stem>.txt` caption. Labels: every folder name on the image's path below the root (each level
  is its own label, so `animals/birds/cartoon` gives `animals`, `birds`, `cartoon`); tags: the
  words of the caption. Nothing of the folder names goes into the tags. One image per
  (folder, stem): a raster file is preferred over an SVG of the same stamp.
- `tuxpaint`: Debian's `tuxpaint-stamps-default` (`/usr/share/tuxpaint/stamps`), read by the
  `folders` code; captions carry translated `xx.utf8=...` lines, the English one is kept, and the
  `<stem>_mirror.png` pre-flipped copies of a stamp are left out.
- `openmoji`: the npm package `openmoji` 17.0.0: `data/openmoji.json` gives the group and
  subgroup (labels) and the CLDR and OpenMoji tags (tags) of each emoji, `color/svg/` the picture.
  Skin-tone variants (untagged near-copies of their base emoji) are left out.

Each image is composited onto white (alpha), scaled to fit and padded to a square. Files that fail
to decode or rasterise are skipped and counted. Labels with fewer than `min_label_images` images
are dropped and counted. The output is written to a temporary folder beside `out` and renamed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import subprocess
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from pipeline.data.datasets.mirflickr import ANNOTATION_DIR
from pipeline.errors import MangoError

log = logging.getLogger(__name__)

SOURCES = ("tuxpaint", "openmoji", "folders")
TUXPAINT_ROOT = Path("/usr/share/tuxpaint/stamps")
OPENMOJI_VERSION = "17.0.0"
OPENMOJI_ROOT = Path("node_modules/openmoji")
INSTALL_HINT = {
    "tuxpaint": "apt-get install tuxpaint-stamps-default",
    "openmoji": f"npm install openmoji@{OPENMOJI_VERSION}",
}
RASTER_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
SVG_EXTS = (".svg", ".svgz")
RASTERISER_HINT = ("install the PyPI package resvg-py (`pip install resvg-py`) or Debian's librsvg2-bin "
                   "(`apt-get install librsvg2-bin`)")
WHITE = (255, 255, 255)
JPEG_QUALITY = 92
_TRANSLATION = re.compile(r"^([A-Za-z]{2,3})(_[A-Za-z]{2})?(@[A-Za-z]+)?\.utf-?8=(.*)$", re.IGNORECASE)
_WORD = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:['\u2019-][^\W_]+)*")
_MAX_LOGGED_SKIPS = 10


@dataclass(frozen=True)
class Item:
    """One picture of a collection: its file, raw label names and raw tags (in source order)."""

    path: Path
    labels: tuple[str, ...]
    tags: tuple[str, ...]
    key: str  # how the picture is named in logs and SOURCE.txt (a path below the root, a hexcode)


@dataclass
class Collection:
    source: str
    root: Path
    title: str
    licence: str
    label_scheme: str
    tag_scheme: str
    items: list[Item]
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> files not taken as images


@dataclass
class ConvertSummary:
    source: str
    out: Path
    images: int
    skipped: dict[str, str]  # key -> reason (failed to decode or rasterise)
    labels: dict[str, int]  # kept label -> images
    dropped_labels: dict[str, int]  # label with fewer than min_label_images -> images
    mean_labels: float  # kept labels per written image
    mean_tags: float  # raw tags per written image
    no_label: int  # written images with no kept label
    no_tags: int  # written images without a tag
    left_out: dict[str, int]


# ----------------------------------------------------------------------------- captions and labels


def english_caption(text: str) -> str:
    """The English text of a caption file: the lines that are not `xx.utf8=...` translations.

    Tux Paint's stamp descriptions start with the English line, then one `lang.utf8=text` line per
    translation; a caption with only translated lines falls back to its `en*.utf8=` line.
    """
    plain, english = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _TRANSLATION.match(line)
        if m is None:
            plain.append(line)
        elif m.group(1).lower() == "en" and m.group(4).strip():
            english.append(m.group(4).strip())
    return " ".join(plain) if plain else (english[0] if english else "")


def caption_words(text: str) -> list[str]:
    """The words of a caption as found (case kept), each once, in order: "Tux—the Linux mascot!" ->
    Tux, the, Linux, mascot. Apostrophes and hyphens inside a word are kept (don't, t-shirt), and
    so are the points and commas inside a number (0.01, 1,000)."""
    return _unique(_WORD.findall(text))


def safe_label(name: str) -> str:
    """A label name that is a safe file name and that read_mirflickr reads back as itself.

    Lower-cased (NFKC), every run of characters other than letters, digits, '-' and '_' becomes
    '_'. A name ending in '_r1' (MIRFlickr's "relevant" files) or equal to 'readme' (skipped by the
    reader) gets a trailing '_'.
    """
    s = unicodedata.normalize("NFKC", name).lower()
    s = re.sub(r"[^\w-]+", "_", s).strip("_-")
    s = re.sub(r"_+", "_", s)
    if not s:
        s = "label_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    if s.endswith("_r1") or s == "readme":
        s += "_"
    return s


def _unique(values: Iterable[str]) -> list[str]:
    seen, out = set(), []
    for v in values:
        v = v.strip()
        if v and v not in seen:
            seen.add(v)
            out.append(v)
    return out


# ----------------------------------------------------------------------------- sources


def collect_folders(root: Path, *, skip_mirrors: bool = False) -> tuple[list[Item], dict[str, int]]:
    """Images below `root`, any depth: a folder's pictures (sorted), then its sub-folders (sorted);
    hidden files and folders are skipped.

    Labels: the folder names between `root` and the image; tags: the words of `<stem>.txt` beside
    it. One image per (folder, stem), raster before SVG. `skip_mirrors`: leave out `X_mirror.*`
    where `X` is an image in the same folder (Tux Paint's pre-flipped copies).
    """
    items: list[Item] = []
    left_out: Counter[str] = Counter()
    order = {ext: i for i, ext in enumerate(RASTER_EXTS + SVG_EXTS)}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        by_stem: dict[str, list[Path]] = {}
        for name in sorted(filenames):
            p = folder / name
            if name.startswith(".") or p.suffix.lower() not in order:
                continue
            by_stem.setdefault(p.stem, []).append(p)
        parts = folder.relative_to(root).parts
        for stem in sorted(by_stem):
            files = sorted(by_stem[stem], key=lambda p: order[p.suffix.lower()])
            if len(files) > 1:
                left_out["another format of the same picture (folder/stem)"] += len(files) - 1
            if skip_mirrors and stem.endswith("_mirror") and stem[: -len("_mirror")] in by_stem:
                left_out["pre-flipped copy of a stamp (<stem>_mirror)"] += 1
                continue
            caption = folder / f"{stem}.txt"
            tags: list[str] = []
            if caption.is_file():
                tags = caption_words(english_caption(caption.read_text(encoding="utf-8", errors="replace")))
            items.append(Item(path=files[0], labels=tuple(_unique(parts)), tags=tuple(tags),
                              key=str(files[0].relative_to(root))))
    return items, dict(left_out)


def _missing(source: str, root: Path, what: str) -> MangoError:
    return MangoError(f"{source}: {what} not found at {root}: install it with `{INSTALL_HINT[source]}`"
                      + (" (or pass --root)" if source == "tuxpaint" else " and pass --root <the package folder>"))


def _dpkg_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown version"
    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown version"
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown version"


def collect_tuxpaint(root: Path | None) -> Collection:
    root = Path(root) if root is not None else TUXPAINT_ROOT
    if not root.is_dir():
        raise _missing("tuxpaint", root, "the Tux Paint stamps")
    items, left_out = collect_folders(root, skip_mirrors=True)
    if not items:
        raise MangoError(f"tuxpaint: no stamp images (PNG or SVG) below {root}: reinstall them with "
                         f"`{INSTALL_HINT['tuxpaint']}` (or pass --root)")
    version = _dpkg_version("tuxpaint-stamps-default") if root == TUXPAINT_ROOT else "unknown version"
    return Collection(
        source="tuxpaint", root=root,
        title=f"Tux Paint stamps (Debian package tuxpaint-stamps-default, {version})",
        licence="GPL-2 (see /usr/share/doc/tuxpaint-stamps-default/copyright)",
        label_scheme="every category folder name on the stamp's path (animals/mammals/bovines -> animals, mammals, bovines)",
        tag_scheme="the words of the stamp's English caption (<stem>.txt, translated lines left out)",
        items=items, left_out=left_out)


def _openmoji_package(root: Path) -> Path | None:
    for cand in (root, root / "node_modules" / "openmoji"):
        if (cand / "data" / "openmoji.json").is_file():
            return cand
    return None


def _split_tags(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def collect_openmoji(root: Path | None) -> Collection:
    given = Path(root) if root is not None else OPENMOJI_ROOT
    pkg = _openmoji_package(given)
    if pkg is None:
        raise _missing("openmoji", given, "the openmoji package (data/openmoji.json)")
    try:
        version = json.loads((pkg / "package.json").read_text()).get("version", "unknown")
        licence = json.loads((pkg / "package.json").read_text()).get("license", "CC-BY-SA-4.0")
    except (OSError, ValueError):
        version, licence = "unknown", "CC-BY-SA-4.0"
    if version != OPENMOJI_VERSION:
        log.warning("openmoji: package version %s (this converter was checked on %s)", version, OPENMOJI_VERSION)
    try:
        entries = json.loads((pkg / "data" / "openmoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MangoError(f"{pkg / 'data' / 'openmoji.json'}: cannot read it ({exc}); reinstall with "
                         f"`{INSTALL_HINT['openmoji']}`") from None
    items: list[Item] = []
    left_out: Counter[str] = Counter()
    for e in entries:
        if e.get("skintone"):
            left_out["skin-tone variant (untagged near-copy of its base emoji)"] += 1
            continue
        hexcode = e.get("hexcode", "")
        labels = _unique([e.get("group", ""), e.get("subgroups", "")])
        tags = _unique(_split_tags(e.get("tags", "")) + _split_tags(e.get("openmoji_tags", "")))
        items.append(Item(path=pkg / "color" / "svg" / f"{hexcode}.svg", labels=tuple(labels), tags=tuple(tags),
                          key=hexcode))
    return Collection(
        source="openmoji", root=pkg, title=f"OpenMoji {version} (npm package openmoji)",
        licence=f"{licence} (OpenMoji, the open-source emoji and icon project, https://openmoji.org; attribution required)",
        label_scheme="the emoji's group and subgroup names (the extras' subgroups reuse the group names, "
                     "e.g. extras-openmoji + animals-nature)",
        tag_scheme="CLDR tags + OpenMoji tags from data/openmoji.json, one per line",
        items=items, left_out=dict(left_out))


def collect_generic(root: Path | None) -> Collection:
    if root is None:
        raise MangoError("folders: --root is required (a folder whose sub-folders are the categories)")
    root = Path(root)
    if not root.is_dir():
        raise MangoError(f"folders: --root '{root}' does not exist or is not a folder")
    items, left_out = collect_folders(root)
    if not items:
        raise MangoError(f"folders: no images ({', '.join(RASTER_EXTS + SVG_EXTS)}) below {root}")
    notes = sorted(p.name for p in root.iterdir() if p.is_file() and re.match(r"(licen[cs]e|copying|readme)", p.name, re.I))
    licence = f"see {', '.join(notes)} in the collection" if notes else "not stated in the collection"
    return Collection(
        source="folders", root=root, title=f"picture folders under {root}", licence=licence,
        label_scheme="every folder name on the image's path below the root",
        tag_scheme="the words of the image's <stem>.txt caption",
        items=items, left_out=left_out)


COLLECTORS: dict[str, Callable[[Path | None], Collection]] = {
    "tuxpaint": collect_tuxpaint, "openmoji": collect_openmoji, "folders": collect_generic,
}


# ----------------------------------------------------------------------------- pictures

Rasteriser = Callable[[Path, int], bytes]  # (svg file, box size) -> PNG bytes


def _resvg(path: Path, size: int) -> bytes:
    import resvg_py

    # dpi 96: resvg_py's default dpi 0 turns pt/mm/in sizes into 0 ("SVG has an invalid size")
    png = bytes(resvg_py.svg_to_bytes(svg_path=str(path), width=size, dpi=96))
    w, h = Image.open(io.BytesIO(png)).size
    if h > w:  # taller than wide: fit the height instead
        png = bytes(resvg_py.svg_to_bytes(svg_path=str(path), height=size, dpi=96))
    return png


def _rsvg_convert(path: Path, size: int) -> bytes:
    res = subprocess.run(["rsvg-convert", "--width", str(size), "--height", str(size), "--keep-aspect-ratio", str(path)],
                         capture_output=True, timeout=120)
    if res.returncode != 0 or not res.stdout:
        raise ValueError(res.stderr.decode(errors="replace").strip() or f"rsvg-convert exited {res.returncode}")
    return res.stdout


def find_rasteriser() -> tuple[str, Rasteriser] | None:
    """The first SVG rasteriser available: resvg-py (PyPI), then rsvg-convert (Debian librsvg2-bin)."""
    if importlib.util.find_spec("resvg_py") is not None:
        return "resvg-py", _resvg
    if shutil.which("rsvg-convert"):
        return "rsvg-convert", _rsvg_convert
    return None


def render(path: Path, size: int, rasterise: Rasteriser | None) -> Image.Image:
    """The picture at `path` as an RGB `size` x `size` image: alpha composited onto white, scaled to
    fit (up or down) and centred on white. Raises on a file that does not decode or rasterise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        if path.suffix.lower() in SVG_EXTS:
            if rasterise is None:
                raise ValueError("no SVG rasteriser")
            im = Image.open(io.BytesIO(rasterise(path, size)))
        else:
            im = Image.open(path)
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
        im.load()
        im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGBA", rgba.size, WHITE + (255,))
        im.alpha_composite(rgba)
    im = im.convert("RGB")
    w, h = im.size
    if w < 1 or h < 1:
        raise ValueError("empty image")
    scale = size / max(w, h)
    new = (max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale))))
    if new != im.size:
        im = im.resize(new, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), WHITE)
    canvas.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


# ----------------------------------------------------------------------------- conversion


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that is not an earlier conversion (the rename swaps it whole)."""
    if out.exists() and not out.is_dir():
        raise MangoError(f"--out '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "SOURCE.txt").is_file():
        raise MangoError(f"--out '{out}' is a non-empty folder that is not an earlier `mango convert` output "
                         "(no SOURCE.txt): choose another folder or remove it")


def _source_text(col: Collection, s: ConvertSummary, size: int, min_label_images: int, rasteriser: str | None) -> str:
    lines = [
        "Converted by `mango convert` (MangoNet) into the MIRFlickr-25k layout.",
        "",
        f"source: {col.source}: {col.title}",
        f"root: {col.root}",
        f"licence: {col.licence}",
        f"labels: {col.label_scheme}; file-name safe, lower-cased; fewer than {min_label_images} images: dropped",
        f"tags: {col.tag_scheme}; meta/tags_raw as found, meta/tags lower-cased",
        f"images: RGB JPEG {size}x{size}, alpha onto white, scaled to fit and padded; SVG rasteriser: {rasteriser or 'none needed'}",
        "read with: dataset.name=mirflickr dataset.root=<this folder> dataset.labels=all",
        "",
        f"images written: {s.images}",
        f"images skipped (failed to decode or rasterise): {len(s.skipped)}",
    ]
    lines += [f"files left out: {n} {reason}" for reason, n in sorted(s.left_out.items())]
    lines += [
        f"labels kept: {len(s.labels)}",
        f"labels dropped (fewer than {min_label_images} images): {len(s.dropped_labels)}",
        f"mean labels per image: {s.mean_labels:.3f}",
        f"mean tags per image: {s.mean_tags:.3f}",
        f"images without a kept label: {s.no_label}",
        f"images without tags: {s.no_tags}",
        "",
        "images per kept label:",
    ]
    lines += [f"  {name} {n}" for name, n in s.labels.items()]
    if s.dropped_labels:
        lines += ["", "dropped labels (images):"]
        lines += [f"  {name} {n}" for name, n in s.dropped_labels.items()]
    if s.skipped:
        lines += ["", "skipped files:"]
        lines += [f"  {key}: {reason}" for key, reason in s.skipped.items()]
    return "\n".join(lines) + "\n"


def convert(source: str, out: str | os.PathLike, root: str | os.PathLike | None = None, *,
            min_label_images: int = 20, size: int = 256, progress: bool = True,
            rasteriser: tuple[str, Rasteriser] | None | str = "auto") -> ConvertSummary:
    """Write `source` (tuxpaint, openmoji, folders) at `root` into a MIRFlickr-25k tree at `out`.

    `rasteriser`: "auto" (find_rasteriser), or a (name, function) pair, or None for none.
    """
    from pipeline.io import atomic_path
    from pipeline.progress import progress as progress_bar

    if source not in COLLECTORS:
        raise MangoError(f"unknown source '{source}': choose one of {', '.join(SOURCES)}")
    if size < 16 or size > 4096:
        raise MangoError(f"--size must be between 16 and 4096 pixels, got {size}")
    if min_label_images < 1:
        raise MangoError(f"--min-label-images must be at least 1, got {min_label_images}")
    out = Path(out)
    _check_out(out)
    col = COLLECTORS[source](Path(root) if root is not None else None)
    n_svg = sum(it.path.suffix.lower() in SVG_EXTS for it in col.items)
    found = find_rasteriser() if rasteriser == "auto" else rasteriser
    if n_svg and found is None:
        raise MangoError(f"{source}: {n_svg} of the {len(col.items)} pictures under {col.root} are SVG and need an "
                         f"SVG rasteriser: {RASTERISER_HINT}")
    raster_name, rasterise = (found if n_svg and found else (None, None))
    log.info("convert %s: %d pictures under %s (%d SVG%s)", source, len(col.items), col.root, n_svg,
             f", rasterised with {raster_name}" if raster_name else "")

    skipped: dict[str, str] = {}
    written: list[Item] = []
    with atomic_path(out, directory=True) as tmp:
        img_dir = tmp / "mirflickr"
        raw_dir, clean_dir = img_dir / "meta" / "tags_raw", img_dir / "meta" / "tags"
        for d in (raw_dir, clean_dir, tmp / ANNOTATION_DIR):
            d.mkdir(parents=True)
        for item in progress_bar(col.items, desc=f"convert {source}", unit="img", disable=not progress):
            try:
                picture = render(item.path, size, rasterise)
            except Exception as exc:  # noqa: BLE001 - any decoder or rasteriser failure skips the file
                reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:200]
                skipped[item.key] = reason
                if len(skipped) <= _MAX_LOGGED_SKIPS:
                    log.warning("convert %s: skipped %s (%s)", source, item.key, reason)
                continue
            n = len(written) + 1
            picture.save(img_dir / f"im{n}.jpg", "JPEG", quality=JPEG_QUALITY)
            (raw_dir / f"tags{n}.txt").write_text("".join(f"{t}\n" for t in item.tags), encoding="utf-8")
            clean = _unique(t.lower() for t in item.tags)
            (clean_dir / f"tags{n}.txt").write_text("".join(f"{t}\n" for t in clean), encoding="utf-8")
            written.append(item)
        if len(skipped) > _MAX_LOGGED_SKIPS:
            log.warning("convert %s: %d files skipped in all (listed in SOURCE.txt)", source, len(skipped))
        if not written:
            raise MangoError(f"{source}: none of the {len(col.items)} pictures under {col.root} could be decoded")

        members: dict[str, list[int]] = {}
        for n, item in enumerate(written, start=1):
            for name in _unique(safe_label(lab) for lab in item.labels):
                members.setdefault(name, []).append(n)
        counts = {name: len(nums) for name, nums in sorted(members.items())}
        kept = {name: c for name, c in counts.items() if c >= min_label_images}
        dropped = {name: c for name, c in counts.items() if c < min_label_images}
        if not kept:
            biggest = max(counts.values(), default=0)
            raise MangoError(f"{source}: no label has {min_label_images} or more images (the largest has {biggest}); "
                             "lower --min-label-images")
        for name in kept:
            (tmp / ANNOTATION_DIR / f"{name}.txt").write_text("".join(f"{n}\n" for n in members[name]))
        per_image = Counter(n for name in kept for n in members[name])
        summary = ConvertSummary(
            source=source, out=out, images=len(written), skipped=skipped, labels=kept, dropped_labels=dropped,
            mean_labels=sum(per_image.values()) / len(written),
            mean_tags=sum(len(it.tags) for it in written) / len(written),
            no_label=len(written) - len(per_image), no_tags=sum(not it.tags for it in written),
            left_out=col.left_out)
        (tmp / "SOURCE.txt").write_text(_source_text(col, summary, size, min_label_images, raster_name), encoding="utf-8")
    log.info("convert %s: %d images (%d skipped), %d labels (%d dropped under %d images), %.2f labels and %.2f tags "
             "per image -> %s", source, summary.images, len(skipped), len(kept), len(dropped), min_label_images,
             summary.mean_labels, summary.mean_tags, out)
    return summary
