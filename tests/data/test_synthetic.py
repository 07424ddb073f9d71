"""The synthetic world: exact MIRFlickr-25k layout, determinism, edge cases, and cheap signal checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.config import SyntheticParams
from pipeline.data.datasets.mirflickr import read_mirflickr
from pipeline.data.synthetic import write
from pipeline.data.synthetic.vocabulary import EMPTY_LABEL, LABELS, RELEVANT_LABELS, clean_tag
from pipeline.data.synthetic.world import plan_world
from pipeline.data.synthetic.write import ANNOTATION_DIR, generate

N, SIZE = 60, 48


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("syn")
    counts = generate(root, SyntheticParams(seed=3, n_images=N, image_size=SIZE, n_topics=6))
    return root, counts


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def annotation(root: Path, name: str) -> list[int]:
    return [int(x) for x in lines(root / ANNOTATION_DIR / f"{name}.txt")]


def test_layout_is_exactly_mirflickr(world):
    root, counts = world
    img_dir = root / "mirflickr"
    assert sorted(p.name for p in root.iterdir()) == ["SYNTHETIC.txt", "mirflickr", ANNOTATION_DIR]
    assert {p.name for p in img_dir.iterdir()} == {f"im{i}.jpg" for i in range(1, N + 1)} | {"meta"}
    assert {p.name for p in (img_dir / "meta").iterdir()} == {"tags", "tags_raw"}
    for sub in ("tags", "tags_raw"):
        assert {p.name for p in (img_dir / "meta" / sub).iterdir()} == {f"tags{i}.txt" for i in range(1, N + 1)}
    expected = {f"{name}.txt" for name in LABELS} | {f"{name}_r1.txt" for name in RELEVANT_LABELS} | {"README.txt"}
    assert {p.name for p in (root / ANNOTATION_DIR).iterdir()} == expected
    assert counts["images"] == N and counts["labels"] == len(LABELS)
    with Image.open(img_dir / "im1.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (SIZE, SIZE))


def test_tags_one_per_line_and_cleaned(world):
    root, _ = world
    meta = root / "mirflickr" / "meta"
    raw_all = []
    for i in range(1, N + 1):
        raw, clean = lines(meta / "tags_raw" / f"tags{i}.txt"), lines(meta / "tags" / f"tags{i}.txt")
        assert all(t and t == t.strip() for t in raw), f"tags{i}.txt: empty line or stray whitespace"
        assert clean == [clean_tag(t) for t in raw]
        assert all(t == t.lower() and " " not in t for t in clean)
        raw_all += raw
    assert any(" " in t for t in raw_all)  # multi-word raw tags ("Sea Side")
    assert any(t != t.lower() for t in raw_all)  # case variants ("Dogs")


def test_annotations_are_valid_image_numbers(world):
    root, _ = world
    for path in (root / ANNOTATION_DIR).glob("*.txt"):
        if path.name == "README.txt":
            continue
        text = lines(path)
        assert all(re.fullmatch(r"[1-9][0-9]*", x) for x in text), path.name
        nums = [int(x) for x in text]
        assert nums == sorted(set(nums)) and all(1 <= n <= N for n in nums), path.name


def test_edge_cases_exist(world):
    root, counts = world
    assert (root / ANNOTATION_DIR / f"{EMPTY_LABEL}.txt").stat().st_size == 0
    assert 2 <= len(annotation(root, "baby")) <= 3
    for name in RELEVANT_LABELS:
        assert set(annotation(root, f"{name}_r1")) <= set(annotation(root, name))
    per_image: dict[int, int] = {}
    for name in LABELS:
        for n in annotation(root, name):
            per_image[n] = per_image.get(n, 0) + 1
    assert max(per_image.values()) >= 2  # multi-label images
    assert len(per_image) < N and counts["images_without_labels"] == N - len(per_image)
    empty = [i for i in range(1, N + 1) if (root / "mirflickr" / "meta" / "tags_raw" / f"tags{i}.txt").stat().st_size == 0]
    assert empty and len(empty) == counts["images_without_tags"]
    assert counts["images_with_junk_tags_only"] >= 1


def test_the_mirflickr_adapter_reads_it(world):
    root, _ = world
    pot = read_mirflickr(root, "potential")
    assert pot.label_names == sorted(LABELS) and pot.images.height == N
    assert read_mirflickr(root, "relevant").label_names == sorted(RELEVANT_LABELS)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path, world):
    root, _ = world
    generate(tmp_path / "a", SyntheticParams(seed=3, n_images=N, image_size=SIZE, n_topics=6))
    generate(tmp_path / "b", SyntheticParams(seed=4, n_images=N, image_size=SIZE, n_topics=6))
    same, other = files(root), files(tmp_path / "b")
    assert files(tmp_path / "a") == same
    assert same.keys() == other.keys()
    differing = [k for k in same if same[k] != other[k]]
    assert "mirflickr/im1.jpg" in differing and "mirflickr/meta/tags_raw/tags1.txt" in differing


STAGE_PARAMS = "synthetic:\n  seed: {seed}\n  n_images: 20\n  image_size: 32\n  n_topics: 4\n"


def run_stage(tmp_path: Path, out: Path, seed: int = 1):
    from stages.cli import app

    params = tmp_path / f"params{seed}.yaml"
    params.write_text(STAGE_PARAMS.format(seed=seed))
    return CliRunner().invoke(app, ["synthesize", "--out", str(out), "--params", str(params)])


def test_stage_writes_atomically(tmp_path):
    out = tmp_path / "data" / "raw"
    result = run_stage(tmp_path, out)
    assert result.exit_code == 0, result.output
    assert (out / "mirflickr" / "im20.jpg").is_file() and not (out / "mirflickr" / "im21.jpg").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["raw"]  # no temporary folder left behind


def test_interrupted_stage_leaves_nothing_and_a_rerun_succeeds(tmp_path, monkeypatch):
    """An exception in the middle of writing the images: no partial collection under the final
    name (none at all on a first run, the previous one untouched on a re-run), no temporary
    folder left behind, and the next run writes the whole collection."""
    out = tmp_path / "data" / "raw"
    real_jpeg_bytes, calls, written_before = write.jpeg_bytes, [], []

    class Interrupted(RuntimeError):
        pass

    def interrupted(img):
        calls.append(1)
        if len(calls) == 5:  # four images written, by now outside the final name: stop here
            written_before.append(sum(out not in f.parents for f in out.parent.rglob("im*.jpg")))
            raise Interrupted("interrupted mid-write")
        return real_jpeg_bytes(img)

    def interrupted_run(seed: int) -> None:
        calls.clear()
        written_before.clear()
        with monkeypatch.context() as m:
            m.setattr(write, "jpeg_bytes", interrupted)
            result = run_stage(tmp_path, out, seed)
        assert isinstance(result.exception, Interrupted), result.output
        assert written_before == [4]

    interrupted_run(seed=1)
    assert not out.exists()  # no partial collection under the final name
    assert list(out.parent.iterdir()) == []  # no stale temporary folder

    result = run_stage(tmp_path, out)
    assert result.exit_code == 0, result.output
    complete = files(out)
    assert len([k for k in complete if k.endswith(".jpg")]) == 20 and "SYNTHETIC.txt" in complete

    interrupted_run(seed=2)  # over an existing collection: it stays as it was
    assert files(out) == complete
    assert sorted(p.name for p in out.parent.iterdir()) == ["raw"]


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def test_tags_carry_topic_and_label_signal(tmp_path):
    params = SyntheticParams(seed=0, n_images=400, image_size=32)
    generate(tmp_path, params)
    meta = tmp_path / "mirflickr" / "meta" / "tags"
    tags = [set(lines(meta / f"tags{i}.txt")) for i in range(1, 401)]
    labels = [set() for _ in range(400)]
    for name in LABELS:
        for n in annotation(tmp_path, name):
            labels[n - 1].add(name)
    keep = [i for i in range(400) if tags[i] and labels[i]]

    # same-topic pairs share more tags than pairs from different topics (topics from the plan)
    topic = [p.topic for p in plan_world(params).images]
    same, diff = [], []
    for a in keep:
        for b in keep:
            if a < b:
                (same if topic[a] == topic[b] else diff).append(jaccard(tags[a], tags[b]))
    assert np.mean(same) > 3 * np.mean(diff)

    # from the files alone: the tag-nearest neighbour shares a label far more often than a random image
    shares = []
    for a in keep:
        b = max((j for j in keep if j != a), key=lambda j: jaccard(tags[a], tags[j]))
        shares.append(bool(labels[a] & labels[b]))
    chance = np.mean([bool(labels[a] & labels[b]) for a in keep for b in keep if a != b])
    assert np.mean(shares) > 0.75 and np.mean(shares) > 2 * chance
