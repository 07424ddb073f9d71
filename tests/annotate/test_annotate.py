"""`mango annotate` on the tiny trained workspace: the pipeline's own path (same scores as the
MangoNet stage on its test images), bad input named and skipped, clear errors, atomic output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from pipeline.errors import MangoError

pytestmark = pytest.mark.slow


def mango(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], capture_output=True, text=True, cwd=cwd)


def workspace_photos(work: Path, split: str = "test") -> pl.DataFrame:
    """The workspace's own images of a split as new photos: path and raw tags, as a user would pass them."""
    meta = pl.read_parquet(work / "data" / "interim" / "metadata.parquet").filter(pl.col("split") == split)
    images = pl.read_parquet(work / "data" / "prepared" / "images.parquet").select("image_id", "path")
    raw = pl.read_parquet(work / "data" / "prepared" / "metadata_raw.parquet")
    tags = raw.group_by("image_id", maintain_order=True).agg(pl.col("text").alias("tags"))
    photos = meta.select("image_id").join(images, on="image_id", maintain_order="left").join(
        tags, on="image_id", how="left", maintain_order="left")
    return photos.with_columns(pl.col("path").map_elements(lambda p: str(work / p), return_dtype=pl.String))


def test_annotating_test_images_with_the_pipelines_neighbours_gives_its_scores(tiny_workspace):
    """The pipeline's own path: the same transform, backbone, InsAtten and MangoNet prediction path
    give the MangoNet stage's test scores (within fp16 rounding: the stage reads fp16 node features)."""
    from pipeline.annotate.annotator import annotate
    from pipeline.annotate.workspace import Workspace

    work, _ = tiny_workspace
    ws = Workspace.from_dvc_yaml(work)
    photos = workspace_photos(work)
    m = int(yaml.safe_load((work / "params.yaml").read_text())["m"])
    nb = pl.read_parquet(work / "data" / "processed" / "neighbours.parquet").filter(pl.col("rank") <= m).sort("image_id", "rank")
    lists: dict[str, list[str]] = {}
    for image_id, neighbour in zip(nb["image_id"].to_list(), nb["neighbour_id"].to_list()):
        lists.setdefault(image_id, []).append(neighbour)
    result = annotate(photos, ws, neighbours=lists)
    ours = result.table
    theirs = pl.read_parquet(work / "data" / "predictions" / "mangonet.parquet")
    labels = [c for c in theirs.columns if c != "image_id"]
    joined = theirs.join(ours, on="image_id", suffix="_new", maintain_order="left")
    assert joined.height == theirs.height == photos.height
    a = joined.select(labels).to_numpy()
    b = joined.select([f"{c}_new" for c in labels]).to_numpy()
    np.testing.assert_allclose(b, a, atol=2e-3, rtol=0)
    assert [list(x) for x in ours["neighbours"].to_list()] == [lists.get(i, []) for i in ours["image_id"].to_list()]


def test_bad_photos_are_named_skipped_and_counted(tiny_workspace, tmp_path):
    work, _ = tiny_workspace
    photos = workspace_photos(work).head(6)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    bad = pl.DataFrame({"image_id": ["gone", "broken", photos["image_id"][0], "no-terms"],
                        "path": [str(tmp_path / "missing.jpg"), str(tmp_path / "corrupt.jpg"), photos["path"][1],
                                 photos["path"][2]],
                        "tags": [["dog"], ["cat"], ["sea"], ["qqqzzz", "2008"]]})
    pl.concat([photos, bad]).write_parquet(tmp_path / "new.parquet")
    out = tmp_path / "out.parquet"
    proc = mango("annotate", "--input", str(tmp_path / "new.parquet"), "--out", str(out), cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "missing.jpg does not exist" in proc.stderr and "corrupt.jpg is not a readable image" in proc.stderr
    assert f"image_id '{photos['image_id'][0]}' in row 8 is also row 0" in proc.stderr
    assert "7 annotated, 3 skipped (1 duplicate, 1 missing, 1 unreadable), 1 without a known term" in proc.stderr
    table = pl.read_parquet(out)
    labels = [c for c in pl.read_parquet(work / "data" / "predictions" / "mangonet.parquet").columns if c != "image_id"]
    assert table.columns == ["image_id", "labels", *labels, "neighbours"]
    assert table["image_id"].to_list() == [*photos["image_id"].to_list(), "no-terms"]
    row = table.filter(pl.col("image_id") == "no-terms").row(0, named=True)
    assert row["neighbours"] == []  # no known term: a graph of the image alone
    scores = table.select(labels).to_numpy()
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    for ids, chosen, s in zip(table["image_id"], table["labels"], scores):
        assert len(chosen) <= 3 and all(s[labels.index(c)] >= 0.5 for c in chosen)
    for nbrs, image_id in zip(table["neighbours"], table["image_id"]):
        assert image_id not in nbrs  # never the image itself
    strict = mango("annotate", "--input", str(tmp_path / "new.parquet"), "--out", str(tmp_path / "strict.parquet"),
                   "--strict", cwd=work)
    assert strict.returncode == 1 and (tmp_path / "strict.parquet").exists()


@pytest.mark.parametrize("case, message", [
    ("missing-column", "missing column 'tags'"),
    ("untrained", "is not trained yet: missing"),
])
def test_clear_errors(tiny_workspace, tmp_path, case, message):
    work, _ = tiny_workspace
    photos = workspace_photos(work).head(2)
    cwd = work
    if case == "missing-column":
        photos = photos.drop("tags")
    else:
        cwd = tmp_path / "empty"
        cwd.mkdir()
        (cwd / "dvc.yaml").write_text((work / "dvc.yaml").read_text())
    photos.write_parquet(tmp_path / "new.parquet")
    proc = mango("annotate", "--input", str(tmp_path / "new.parquet"), "--out", str(tmp_path / "out.parquet"), cwd=cwd)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_neighbours_are_searched_among_indexed_and_new_images(tiny_workspace):
    """Exact Jaccard among every indexed image (both splits) and the batch, never the image itself."""
    from pipeline.annotate.annotator import search_neighbours
    from pipeline.neighbours.common import brute_force_topk, membership_matrix

    work, _ = tiny_workspace
    indexed = pl.read_parquet(work / "data" / "interim" / "metadata.parquet")
    photos = pl.DataFrame({"image_id": ["a", "b", indexed["image_id"][0]], "path": ["", "", ""], "tags": [[], [], []]})
    terms = [indexed["terms"][0].to_list(), indexed["terms"][1].to_list()[:1], indexed["terms"][0].to_list()]
    got = search_neighbours(indexed, photos, terms, 4)
    pool = indexed["terms"].to_list()
    pool[0] = []  # the third photo is indexed image 0 itself
    X = membership_matrix(pl.Series([*pool, *terms], dtype=pl.List(pl.String)))
    want, _ = brute_force_topk(X, 4, queries=np.arange(indexed.height, indexed.height + 3))
    np.testing.assert_array_equal(got, want)
    assert 0 not in got[2]
    with pytest.raises(MangoError):
        from pipeline.annotate.workspace import Workspace

        Workspace.from_dvc_yaml(work / "nowhere")
