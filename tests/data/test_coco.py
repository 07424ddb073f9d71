import json

import numpy as np
import polars as pl
import pytest

from pipeline.config import DatasetParams
from pipeline.data.datasets.coco import read_coco
from pipeline.errors import MangoError
from pipeline.text.lemmatise import lemmatise
from pipeline.neighbours.jaccard import search_neighbours
from pipeline.data.prepare import prepare
from tests.helpers import write_coco


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path / "coco")


def test_labels_are_the_categories_sorted_by_id(coco):
    prep = read_coco(coco.root)
    # json lists ids 18, 1, 10, 3, 90: label order is by id, names are the category names
    assert prep.label_names == ["person", "car", "traffic light", "dog", "toothbrush"]
    ids = [int(i) for i in prep.labels["image_id"]]
    expected = np.stack([coco.labels[i] for i in ids])
    assert np.array_equal(prep.labels.select(prep.label_names).to_numpy(), expected)
    assert all(prep.labels.schema[c] == pl.UInt8 for c in prep.label_names)


def test_official_split_paths_and_captions(coco):
    prep = read_coco(coco.root)
    train = prep.images.filter(pl.col("split") == "train")
    test = prep.images.filter(pl.col("split") == "test")
    assert test["image_id"].to_list() == [str(i) for i in coco.ids["val2014"]]
    first = coco.ids["train2014"][0]
    assert train["path"][0] == str(coco.root / "train2014" / f"COCO_train2014_{first:012d}.jpg")
    assert test["path"][0].endswith(f"val2014/COCO_val2014_{coco.ids['val2014'][0]:012d}.jpg")
    assert set(prep.metadata_raw["field"]) == {"caption"}
    assert prep.metadata_raw.filter(pl.col("image_id") == str(first))["text"].to_list() == coco.captions[first]


def test_images_without_instances_are_dropped_and_counted(coco):
    prep = read_coco(coco.root)
    (empty,) = coco.unannotated
    assert str(empty) not in prep.images["image_id"].to_list()
    assert str(empty) not in prep.metadata_raw["image_id"].to_list()  # its captions go with it
    assert prep.images.height == len(coco.ids["train2014"]) + len(coco.ids["val2014"]) - 1
    assert prep.counts["train2014_no_instances_dropped"] == 1 and prep.counts["val2014_no_instances_dropped"] == 0
    assert prep.notes == ["instances_train2014.json: 1 image(s) without any instance annotation dropped"]


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_inconsistent_annotation_files_are_errors(coco):
    ann = coco.root / "annotations"
    _edit(ann / "instances_val2014.json", lambda d: d["categories"].pop())
    with pytest.raises(MangoError, match=r"instances_val2014.json: categories differ from those of instances_train2014.json"):
        read_coco(coco.root)
    _edit(ann / "instances_val2014.json", lambda d: d["categories"].append({"id": 90, "name": "toothbrush"}))
    _edit(ann / "instances_train2014.json", lambda d: d["annotations"][0].update(category_id=12))
    with pytest.raises(MangoError, match=r"instances_train2014.json: annotations\[0\] has category_id 12, not among the 5"):
        read_coco(coco.root)
    _edit(ann / "instances_train2014.json", lambda d: d["annotations"][0].update(category_id=1))
    old, new = coco.ids["val2014"][0], coco.ids["train2014"][0]

    def reuse_train_id(d):
        for item in d["images"] + d["annotations"]:
            item.update({k: new for k in ("id", "image_id") if item.get(k) == old and (k == "image_id" or "file_name" in item)})

    _edit(ann / "instances_val2014.json", reuse_train_id)
    with pytest.raises(MangoError, match=rf"image id {coco.ids['train2014'][0]} is in both train2014 and val2014"):
        read_coco(coco.root)
    (ann / "captions_val2014.json").unlink()
    with pytest.raises(MangoError, match=r"captions_val2014.json: missing"):
        read_coco(coco.root)


def test_not_a_coco_tree(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(MangoError, match=r"not an MS-COCO 2014 tree \(missing annotations/\)"):
        read_coco(tmp_path / "x")


def test_captions_flow_into_jaccard_neighbours(coco):
    prep, stats = prepare(DatasetParams(name="coco", root=str(coco.root), test_fraction=0.9))
    assert stats["split"] == "official" and stats["test"] == len(coco.ids["val2014"])  # test_fraction ignored
    out = lemmatise(prep.images, prep.labels, prep.metadata_raw, vocab_size=100)
    terms = dict(zip(out.metadata["image_id"].to_list(), out.metadata["terms"].to_list()))
    first = coco.ids["train2014"][0]
    assert "picture" in terms[str(first)] and "and" not in terms[str(first)]  # captions tokenised like tags
    nb = search_neighbours(out.metadata, k=3)
    assert nb.height > 0 and set(nb["image_id"]) <= set(out.metadata["image_id"])
    split = dict(zip(out.metadata["image_id"], out.metadata["split"]))
    assert all(split[a] == split[b] for a, b in nb.select("image_id", "neighbour_id").iter_rows())
