"""`mango convert`: tuxpaint / openmoji / folders collections into the MIRFlickr-25k layout.

Every fixture is built here, in each source's on-disk layout, from a few Pillow PNGs (and a tiny
SVG where an SVG rasteriser is installed; the openmoji tests otherwise use a stand-in rasteriser).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.datasets import convert as cv
from pipeline.data.datasets.mirflickr import ANNOTATION_DIR, read_mirflickr
from pipeline.errors import MangoError

TINY_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="40pt" height="20pt" viewBox="0 0 40 20">'
            '<rect x="10" y="5" width="20" height="10" fill="#0000ff"/></svg>')
HAVE_RASTERISER = cv.find_rasteriser() is not None


def png(path: Path, colour=(255, 0, 0), size=(30, 20), transparent_border: bool = True) -> Path:
    """An RGBA PNG: `colour` in the middle, a fully transparent border (or opaque black)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    border = (0, 0, 0, 0) if transparent_border else (0, 0, 0, 255)
    im = Image.new("RGBA", size, border)
    w, h = size
    im.paste(Image.new("RGBA", (w // 2, h // 2), colour + (255,)), (w // 4, h // 4))
    im.save(path)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def fake_rasteriser(path: Path, size: int) -> bytes:
    """Stands in for resvg-py / rsvg-convert: a green box, or an error for an SVG that says 'broken'."""
    if "broken" in path.read_text():
        raise ValueError("unexpected end of stream")
    buf = io.BytesIO()
    Image.new("RGBA", (size, size // 2), (0, 200, 0, 255)).save(buf, "PNG")
    return buf.getvalue()


def annotations(out: Path) -> dict[str, list[int]]:
    return {p.stem: [int(x) for x in p.read_text().split()] for p in sorted((out / ANNOTATION_DIR).glob("*.txt"))}


def tags(out: Path, n: int, kind: str = "tags_raw") -> list[str]:
    return (out / "mirflickr" / "meta" / kind / f"tags{n}.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture
def folders_root(tmp_path: Path) -> Path:
    root = tmp_path / "pics"
    png(root / "animals" / "birds" / "owl.png", (200, 120, 0))
    text(root / "animals" / "birds" / "owl.txt", "A brown Owl, at night.\n")
    png(root / "animals" / "birds" / "cartoon" / "tux.png", (0, 0, 0), size=(20, 30))
    text(root / "animals" / "birds" / "cartoon" / "tux.txt", "Tux—the Linux mascot!")
    png(root / "animals" / "mammals" / "cow.png", (255, 255, 0))
    text(root / "animals" / "mammals" / "cow.txt", "A cow. A COW!")
    png(root / "food" / "apple.png", (255, 0, 0), transparent_border=False)  # no caption: no tags
    (root / "food" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    text(root / "food" / "broken.txt", "A broken picture")
    png(root / "food" / "pear.png", (0, 255, 0))
    text(root / "food" / "pear.txt", "A pear")
    png(root / ".hidden" / "secret.png")
    text(root / "food" / "notes.md", "not a picture")
    return root


def test_folders_layout_labels_tags_and_reader(folders_root, tmp_path):
    out = tmp_path / "out"
    s = cv.convert("folders", out, folders_root, min_label_images=1, size=64, progress=False)
    # a folder's pictures, then its sub-folders, sorted: birds/owl, birds/cartoon/tux, mammals/cow, food/apple, food/pear
    assert s.images == 5 and sorted(p.name for p in (out / "mirflickr").glob("*.jpg")) == [f"im{n}.jpg" for n in range(1, 6)]
    assert list(s.skipped) == ["food/broken.png"]
    assert annotations(out) == {"animals": [1, 2, 3], "birds": [1, 2], "cartoon": [2], "food": [4, 5], "mammals": [3]}
    assert tags(out, 1) == ["A", "brown", "Owl", "at", "night"]
    assert tags(out, 1, "tags") == ["a", "brown", "owl", "at", "night"]
    assert tags(out, 2) == ["Tux", "the", "Linux", "mascot"]
    assert tags(out, 3) == ["A", "cow", "COW"] and tags(out, 3, "tags") == ["a", "cow"]
    assert tags(out, 4) == [] and tags(out, 5) == ["A", "pear"]  # the skipped picture takes no number
    for n in range(1, 6):
        with Image.open(out / "mirflickr" / f"im{n}.jpg") as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))
    owl = np.asarray(Image.open(out / "mirflickr" / "im1.jpg")).astype(int)
    assert (owl[0, 0] > 245).all() and np.abs(owl[32, 32] - [200, 120, 0]).max() < 20  # alpha -> white
    apple = np.asarray(Image.open(out / "mirflickr" / "im4.jpg")).astype(int)
    assert (apple[2, 32] > 245).all() and (apple[20, 2] < 20).all()  # 30x20 padded above/below, not stretched
    src = (out / "SOURCE.txt").read_text()
    assert "source: folders" in src and "images written: 5" in src and "skipped (failed to decode or rasterise): 1" in src
    assert "food/broken.png" in src and "mean labels per image: 1.800" in src
    assert not list(tmp_path.glob(".out.tmp-*"))

    prep = read_mirflickr(out, "all", "raw")
    assert prep.label_names == ["animals", "birds", "cartoon", "food", "mammals"]
    assert prep.labels.filter(prep.labels["image_id"] == "2").select(prep.label_names).row(0) == (1, 1, 1, 0, 0)
    meta = prep.metadata_raw
    assert meta.filter(meta["image_id"] == "2")["text"].to_list() == ["Tux", "the", "Linux", "mascot"]
    assert s.labels == {"animals": 3, "birds": 2, "cartoon": 1, "food": 2, "mammals": 1}
    assert s.mean_labels == pytest.approx(9 / 5) and s.mean_tags == pytest.approx((5 + 4 + 3 + 0 + 2) / 5)
    assert (s.no_label, s.no_tags) == (0, 1)


def test_min_label_images_drops_and_counts(folders_root, tmp_path):
    out = tmp_path / "out"
    s = cv.convert("folders", out, folders_root, min_label_images=2, size=32, progress=False)
    assert annotations(out) == {"animals": [1, 2, 3], "birds": [1, 2], "food": [4, 5]}
    assert s.dropped_labels == {"cartoon": 1, "mammals": 1}
    src = (out / "SOURCE.txt").read_text()
    assert "labels dropped (fewer than 2 images): 2" in src and "  cartoon 1" in src
    assert read_mirflickr(out, "all").label_names == ["animals", "birds", "food"]
    with pytest.raises(MangoError, match="no label has 4 or more images .*largest has 3.*--min-label-images"):
        cv.convert("folders", tmp_path / "out2", folders_root, min_label_images=4, size=32, progress=False)
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2.tmp-*"))


def test_output_is_replaced_atomically_but_never_a_foreign_folder(folders_root, tmp_path):
    out = tmp_path / "out"
    cv.convert("folders", out, folders_root, min_label_images=1, size=32, progress=False)
    (out / "stale.txt").write_text("from an earlier run")
    cv.convert("folders", out, folders_root, min_label_images=2, size=32, progress=False)
    assert not (out / "stale.txt").exists() and "cartoon" not in annotations(out)
    foreign = tmp_path / "home"
    text(foreign / "thesis.tex", "precious")
    with pytest.raises(MangoError, match="not an earlier `mango convert` output"):
        cv.convert("folders", foreign, folders_root, progress=False)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_safe_label_names():
    assert cv.safe_label("Body Parts") == "body_parts"
    assert cv.safe_label("00_symbols") == "00_symbols"
    assert cv.safe_label("a/b: c?") == "a_b_c"
    assert cv.safe_label("dog_r1") == "dog_r1_"  # read_mirflickr would take X_r1 for a "relevant" file
    assert cv.safe_label("README") == "readme_"
    assert cv.safe_label("???").startswith("label_")


def test_english_caption_and_words():
    caption = "A frog.\nach.utf8=Ogwalogwal\nde.utf8=Ein Frosch.\nen_GB.utf8=A frog.\nca@valencia.utf8=Una granota.\n"
    assert cv.english_caption(caption) == "A frog."
    assert cv.english_caption("A calculator.  6x7=42\nde.utf8=Ein Rechner.  6x7=42\n") == "A calculator.  6x7=42"
    assert cv.english_caption("fr.utf8=Une vache.\nen_US.utf8=A cow.\n") == "A cow."
    assert cv.caption_words("A European coin of 1 cent (0.01). Don't wear a t-shirt!") == [
        "A", "European", "coin", "of", "1", "cent", "0.01", "Don't", "wear", "a", "t-shirt"]


def tuxpaint_tree(root: Path, with_svg: bool) -> Path:
    bov = root / "animals" / "mammals" / "bovines"
    for stem, colour in (("cow", (90, 60, 30)), ("yak", (40, 40, 40))):
        png(bov / f"{stem}.png", colour)
        text(bov / f"{stem}.txt", f"A {stem}.\nde.utf8=Ein Tier.\nfr.utf8=Un animal.\n")
        text(bov / f"{stem}.dat", "noflip\n")
        (bov / f"{stem}.ogg").write_bytes(b"OggS")
    png(bov / "cow_mirror.png", (90, 60, 30))  # Tux Paint's pre-flipped copy: left out
    png(root / "animals" / "birds" / "cartoon" / "tux.png")  # a stamp without a caption
    png(root / "food" / "fruit" / "apple.png", (255, 0, 0))
    text(root / "food" / "fruit" / "apple.svg", TINY_SVG)  # same stamp in two formats: one picture
    text(root / "food" / "fruit" / "apple.txt", "An apple.\nes.utf8=Una manzana.\n")
    if with_svg:
        text(root / "food" / "fruit" / "pear.svg", TINY_SVG)
        text(root / "food" / "fruit" / "pear.txt", "A pear.\n")
    return root


@pytest.mark.parametrize("with_svg", [False, pytest.param(True, marks=pytest.mark.skipif(
    not HAVE_RASTERISER, reason="no SVG rasteriser (pip install resvg-py, or apt-get install librsvg2-bin)"))])
def test_tuxpaint_uses_the_folders_reader(tmp_path, with_svg):
    root = tuxpaint_tree(tmp_path / "stamps", with_svg)
    out = tmp_path / "tux"
    s = cv.convert("tuxpaint", out, root, min_label_images=1, size=48, progress=False)
    n = 5 if with_svg else 4  # bovines/cow, bovines/yak, birds/cartoon/tux, fruit/apple (+ fruit/pear)
    assert s.images == n and not s.skipped
    assert s.left_out == {"another format of the same picture (folder/stem)": 1,
                          "pre-flipped copy of a stamp (<stem>_mirror)": 1}
    ann = annotations(out)
    assert ann["animals"] == [1, 2, 3] and ann["bovines"] == [2, 3] and ann["cartoon"] == [1]
    assert ann["fruit"] == ([4, 5] if with_svg else [4])
    assert tags(out, 2) == ["A", "cow"] and tags(out, 1) == [] and tags(out, 4) == ["An", "apple"]
    assert s.mean_labels > 1  # every stamp has two or three folder levels
    assert read_mirflickr(out, "all").images.height == n
    if with_svg:
        pear = np.asarray(Image.open(out / "mirflickr" / "im5.jpg")).astype(int)
        assert np.abs(pear[24, 24] - [0, 0, 255]).max() < 40 and (pear[2, 2] > 245).all()
        assert "SVG rasteriser: " in (out / "SOURCE.txt").read_text()


def test_svg_without_a_rasteriser_names_what_to_install(tmp_path):
    root = tuxpaint_tree(tmp_path / "stamps", with_svg=True)
    with pytest.raises(MangoError, match=r"1 of the 5 pictures .* are SVG .*pip install resvg-py.*apt-get install librsvg2-bin"):
        cv.convert("tuxpaint", tmp_path / "tux", root, progress=False, rasteriser=None)
    assert not (tmp_path / "tux").exists()


def openmoji_package(pkg: Path, n_faces: int = 3) -> Path:
    entries = []
    for i in range(n_faces):
        entries.append({"hexcode": f"1F60{i}", "group": "smileys-emotion", "subgroups": "face-smiling",
                        "tags": "face, grin" if i else "", "openmoji_tags": f"happy, smile{i}, face", "skintone": ""})
    entries += [
        {"hexcode": "1F44B", "group": "people-body", "subgroups": "hand-fingers-open", "tags": "hand, wave",
         "openmoji_tags": "", "skintone": ""},
        {"hexcode": "1F44B-1F3FB", "group": "people-body", "subgroups": "hand-fingers-open", "tags": "",
         "openmoji_tags": "", "skintone": 1},  # skin-tone variant: left out
        {"hexcode": "E000", "group": "extras-openmoji", "subgroups": "animals-nature", "tags": "",
         "openmoji_tags": "goldfish, fish", "skintone": ""},
        {"hexcode": "E001", "group": "extras-openmoji", "subgroups": "animals-nature", "tags": "",
         "openmoji_tags": "broken", "skintone": ""},
        {"hexcode": "E002", "group": "extras-openmoji", "subgroups": "animals-nature", "tags": "",
         "openmoji_tags": "missing", "skintone": ""},  # no SVG file
    ]
    text(pkg / "package.json", json.dumps({"name": "openmoji", "version": "17.0.0", "license": "CC-BY-SA-4.0"}))
    text(pkg / "data" / "openmoji.json", json.dumps(entries))
    for e in entries:
        if e["hexcode"] != "E002":
            text(pkg / "color" / "svg" / f"{e['hexcode']}.svg", "<svg broken" if e["hexcode"] == "E001" else TINY_SVG)
    return pkg


def test_openmoji_labels_tags_and_skips(tmp_path):
    pkg = openmoji_package(tmp_path / "node_modules" / "openmoji")
    out = tmp_path / "om"
    # --root may name the package or the folder holding node_modules/
    s = cv.convert("openmoji", out, tmp_path, min_label_images=1, size=32, progress=False,
                   rasteriser=("fake", fake_rasteriser))
    assert s.images == 5 and set(s.skipped) == {"E001", "E002"}
    assert s.left_out == {"skin-tone variant (untagged near-copy of its base emoji)": 1}
    assert annotations(out) == {"animals-nature": [5], "extras-openmoji": [5], "face-smiling": [1, 2, 3],
                                "hand-fingers-open": [4], "people-body": [4], "smileys-emotion": [1, 2, 3]}
    assert tags(out, 1) == ["happy", "smile0", "face"]
    assert tags(out, 2) == ["face", "grin", "happy", "smile1"]  # CLDR tags, then OpenMoji's, each once
    assert tags(out, 5) == ["goldfish", "fish"]
    assert s.mean_labels == 2.0
    src = (out / "SOURCE.txt").read_text()
    assert "OpenMoji 17.0.0" in src and "CC-BY-SA-4.0" in src and "E001: ValueError: unexpected end of stream" in src
    assert str(pkg) in src
    prep = read_mirflickr(out, "all", "clean")
    assert len(prep.label_names) == 6 and prep.images.height == 5


@pytest.mark.skipif(not HAVE_RASTERISER, reason="no SVG rasteriser (pip install resvg-py, or apt-get install librsvg2-bin)")
def test_openmoji_with_the_real_rasteriser(tmp_path):
    pkg = openmoji_package(tmp_path / "openmoji", n_faces=1)
    s = cv.convert("openmoji", tmp_path / "om", pkg, min_label_images=1, size=32, progress=False)
    assert s.images == 3 and set(s.skipped) == {"E001", "E002"}
    im = np.asarray(Image.open(tmp_path / "om" / "mirflickr" / "im1.jpg")).astype(int)
    assert np.abs(im[16, 16] - [0, 0, 255]).max() < 40 and (im[1, 1] > 245).all()


def test_missing_packages_name_what_to_install(tmp_path):
    with pytest.raises(MangoError, match=r"apt-get install tuxpaint-stamps-default"):
        cv.convert("tuxpaint", tmp_path / "o", tmp_path / "no-stamps", progress=False)
    (tmp_path / "empty-stamps").mkdir()
    with pytest.raises(MangoError, match=r"no stamp images .*apt-get install tuxpaint-stamps-default"):
        cv.convert("tuxpaint", tmp_path / "o", tmp_path / "empty-stamps", progress=False)
    with pytest.raises(MangoError, match=r"npm install openmoji@17\.0\.0"):
        cv.convert("openmoji", tmp_path / "o", tmp_path / "nowhere", progress=False)
    with pytest.raises(MangoError, match="--root is required"):
        cv.convert("folders", tmp_path / "o", None, progress=False)
    with pytest.raises(MangoError, match="unknown source 'flickr': choose one of tuxpaint, openmoji, folders"):
        cv.convert("flickr", tmp_path / "o", tmp_path, progress=False)
    assert not (tmp_path / "o").exists()


def test_cli_converts_and_reports_errors_cleanly(folders_root, tmp_path):
    out = tmp_path / "cli"
    ok = subprocess.run([sys.executable, "-m", "stages.cli", "convert", "folders", "--root", str(folders_root),
                         "--out", str(out), "--min-label-images", "2", "--size", "32", "--no-progress"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "convert folders: 5 images (1 skipped), 3 labels (2 dropped under 2 images)" in ok.stderr
    assert read_mirflickr(out, "all").label_names == ["animals", "birds", "food"]
    bad = subprocess.run([sys.executable, "-m", "stages.cli", "convert", "tuxpaint", "--root", str(tmp_path / "none"),
                          "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "install it with `apt-get install tuxpaint-stamps-default`" in bad.stderr
