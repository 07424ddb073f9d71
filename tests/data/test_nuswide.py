from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.config import DatasetParams
from pipeline.data.datasets.nuswide import photo_id, read_nuswide, relative_path
from pipeline.errors import MangoError
from pipeline.text.lemmatise import lemmatise
from pipeline.data.prepare import prepare
from tests.helpers import write_groups, write_nuswide


@pytest.fixture
def nus(tmp_path):
    return write_nuswide(tmp_path / "nus")


def test_list_lines_to_paths_and_photo_ids():
    assert relative_path("actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert relative_path("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg  ") == "actor/0001_2124494179.jpg"
    assert photo_id("actor/0001_2124494179.jpg") == "2124494179"
    assert photo_id("actor/0001_abc.jpg") is None


def test_reads_the_official_layout(nus):
    prep = read_nuswide(nus.root)
    n = len(nus.ids) - 1  # the duplicate line is dropped
    assert prep.label_names == nus.concepts  # Concepts81.txt order
    assert prep.images["image_id"].to_list() == nus.ids[:n]
    assert prep.images["split"].to_list() == nus.split[:n]  # from Train/TestImagelist.txt
    paths = prep.images["path"].to_list()
    assert paths[0] == str(nus.root / "Flickr" / "actor" / f"0001_{nus.ids[0]}.jpg")  # prefix and backslashes gone
    assert all(Path(p).is_file() for p in paths)
    assert np.array_equal(prep.labels.select(nus.concepts).to_numpy(), nus.labels[:n])
    assert prep.labels.schema[nus.concepts[0]] == pl.UInt8
    assert set(prep.metadata_raw["field"]) == {"tags"}
    for i in (0, 5):
        got = prep.metadata_raw.filter(pl.col("image_id") == nus.ids[i])["text"].to_list()
        assert got == nus.tags[i]


def test_duplicate_photo_id_keeps_the_first_line_and_is_counted(nus):
    prep = read_nuswide(nus.root)
    dup = nus.ids[1]
    assert prep.images["image_id"].to_list().count(dup) == 1
    row = prep.labels.filter(pl.col("image_id") == dup).select(nus.concepts).to_numpy()[0]
    assert np.array_equal(row, nus.labels[1])  # line 2's labels, not line 13's
    assert "zebra" not in prep.images.filter(pl.col("image_id") == dup)["path"].item()
    assert prep.metadata_raw.filter(pl.col("image_id") == dup)["text"].to_list() == nus.tags[1]
    assert prep.counts["duplicate_ids_dropped"] == 1
    assert any("1 duplicate photo id" in n and "line 13" in n and "first at line 2" in n for n in prep.notes)


def test_stray_label_value_is_read_as_zero_and_reported(nus):
    prep = read_nuswide(nus.root)
    assert prep.labels.filter(pl.col("image_id") == nus.ids[2])["lake"].item() == 0
    assert prep.counts["malformed_label_lines"] == 1
    assert any("Labels_lake.txt" in n and "line 3" in n and "read as 0" in n for n in prep.notes)


def test_label_file_with_another_line_count_is_an_error(nus):
    path = nus.root / "Groundtruth" / "AllLabels" / "Labels_dog.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(MangoError, match=r"Labels_dog.txt: 11 lines, but ImageList/Imagelist.txt lists 13 images"):
        read_nuswide(nus.root)


def test_concept_without_label_file_is_an_error(nus):
    (nus.root / "Groundtruth" / "AllLabels" / "Labels_sky.txt").unlink()
    with pytest.raises(MangoError, match=r"Labels_sky.txt: missing label file for a concept listed in Concepts81.txt"):
        read_nuswide(nus.root)


def test_concepts_file_at_the_root_is_accepted(nus):
    (nus.root / "ConceptsList" / "Concepts81.txt").rename(nus.root / "Concepts81.txt")
    assert read_nuswide(nus.root).label_names == nus.concepts


def test_tags_out_of_image_list_order_are_an_error(nus):
    path = nus.root / "NUS_WID_Tags" / "All_Tags.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_text("".join(lines))
    with pytest.raises(MangoError, match=rf"All_Tags.txt, line 4: photo id {nus.ids[4]}, but line 4 .* is photo {nus.ids[3]}"):
        read_nuswide(nus.root)
    path.write_text("".join(lines[:5]))
    with pytest.raises(MangoError, match=r"All_Tags.txt: 5 lines, but ImageList/Imagelist.txt lists 13 images"):
        read_nuswide(nus.root)


def test_split_lists_are_checked(nus):
    train, test = nus.root / "ImageList" / "TrainImagelist.txt", nus.root / "ImageList" / "TestImagelist.txt"
    lines = test.read_text().splitlines(keepends=True)
    test.write_text("".join(lines[1:]) + "nowhere\\0099_1.jpg\r\n")  # image 2 in no list, one unknown line
    prep = read_nuswide(nus.root)
    assert nus.ids[1] not in prep.images["image_id"].to_list()
    assert prep.counts["not_in_a_split_dropped"] == 1 and prep.counts["split_list_lines_unknown"] == 1
    assert any("neither" in n for n in prep.notes)
    train.write_text(train.read_text() + lines[0])  # image 2 now in both lists
    test.write_text("".join(lines))
    with pytest.raises(MangoError, match=r"TestImagelist.txt, line 1: .* is also in ImageList/TrainImagelist.txt"):
        read_nuswide(nus.root)


def test_not_a_nuswide_tree(tmp_path):
    with pytest.raises(MangoError, match="does not exist"):
        read_nuswide(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MangoError, match=r"not a NUS-WIDE tree \(missing ImageList/Imagelist.txt\)"):
        read_nuswide(tmp_path / "empty")


def test_crawled_groups_become_metadata_rows(nus, tmp_path):
    crawl = write_groups(tmp_path / "crawl", {nus.ids[0]: ["Dogs of the World", "Sky Lovers"], nus.ids[3]: [],
                                               "42": ["not in the list"], nus.ids[5]: ["Lakes"]})
    prep = read_nuswide(nus.root, str(crawl))
    groups = prep.metadata_raw.filter(pl.col("field") == "groups")
    assert sorted(groups.rows()) == sorted([(nus.ids[0], "groups", "Dogs of the World"),
                                            (nus.ids[0], "groups", "Sky Lovers"), (nus.ids[5], "groups", "Lakes")])
    assert prep.counts["crawled_photos_not_in_image_list"] == 1 and prep.counts["images_with_groups"] == 2
    assert prep.metadata_raw.filter(pl.col("field") == "tags").height == sum(len(t) for t in nus.tags[:-1])


def test_groups_as_structs_and_bad_crawls(nus, tmp_path):
    path = tmp_path / "structs.parquet"
    pl.DataFrame({"photo_id": [int(nus.ids[0])], "status": ["ok"],
                  "groups": [[{"id": "123@N01", "title": "Dogs"}]]}).write_parquet(path)
    rows = read_nuswide(nus.root, str(path)).metadata_raw.filter(pl.col("field") == "groups")
    assert rows.rows() == [(nus.ids[0], "groups", "Dogs")]
    with pytest.raises(MangoError, match=r"dataset.groups: '.*nope' does not exist"):
        read_nuswide(nus.root, str(tmp_path / "nope"))
    pl.DataFrame({"photo_id": ["1"], "tags": [["a"]]}).write_parquet(tmp_path / "nogroups.parquet")
    with pytest.raises(MangoError, match=r"has no column 'groups'"):
        read_nuswide(nus.root, str(tmp_path / "nogroups.parquet"))


def test_prepare_uses_the_official_split_and_records_the_counts(nus, tmp_path):
    crawl = write_groups(tmp_path / "crawl", {nus.ids[0]: ["Sunny Skies"]})
    prep, stats = prepare(DatasetParams(name="nuswide", root=str(nus.root), groups=str(crawl), test_fraction=0.2))
    assert prep.images["split"].to_list() == nus.split[:-1]  # test_fraction ignored
    assert stats["split"] == "official" and (stats["train"], stats["test"]) == (6, 6)
    assert stats["adapter_counts"]["duplicate_ids_dropped"] == 1 and len(stats["notes"]) == 2
    assert stats["label_set"] == "all 3"
    _, stats = prepare(DatasetParams(name="nuswide", root=str(nus.root), split="random", test_fraction=0.25))
    assert stats["split"].startswith("random") and stats["test"] == 3
    # lemmatise reads every field: tags and group titles alike become terms
    out = lemmatise(prep.images, prep.labels, prep.metadata_raw, vocab_size=100)
    terms = dict(zip(out.metadata["image_id"].to_list(), out.metadata["terms"].to_list()))
    assert {"sunny", "sky"} <= set(terms[nus.ids[0]])


@pytest.mark.parametrize("data, match", [
    ({"name": "flickr30k"}, r"dataset.name must be one of mirflickr, nuswide, coco"),
    ({"name": "coco", "groups": "data/crawl"}, r"dataset.groups is read for nuswide only"),
    ({"name": "nuswide", "labels": "relevant"}, r"dataset.labels applies to mirflickr only"),
    ({"name": "coco", "tags": "clean"}, r"dataset.tags applies to mirflickr only"),
    ({"split": "half"}, r"dataset.split must be one of official, random"),
])
def test_dataset_params_are_validated_per_dataset(data, match):
    with pytest.raises(MangoError, match=match):
        DatasetParams(**data)
