
import numpy as np
import pytest

from pipeline.config import DatasetParams
from pipeline.data.datasets.mirflickr import read_mirflickr
from pipeline.errors import MangoError
from pipeline.data.prepare import assign_split, prepare
from tests.conftest import write_mirflickr


def test_label_sets_are_discovered_and_sorted(mirflickr_root):
    pot = read_mirflickr(mirflickr_root, "potential")
    assert pot.label_names == ["dog", "night", "sea"]
    rel = read_mirflickr(mirflickr_root, "relevant")
    assert rel.label_names == ["dog"]
    lab = rel.labels.sort("image_id")
    assert lab.filter(lab["image_id"] == "1")["dog"].item() == 1
    assert lab.filter(lab["image_id"] == "3")["dog"].item() == 0  # 3 is potential dog, not relevant


def test_all_label_set_includes_non_potential_files(tmp_path):
    root = write_mirflickr(tmp_path / "mf", labels={"dog": [1], "graffiti": [2], "dog_r1": [1]})
    assert read_mirflickr(root, "all").label_names == ["dog", "graffiti"]
    assert read_mirflickr(root, "potential").label_names == ["dog"]


def test_labels_and_raw_tags_are_read(mirflickr_root):
    prep = read_mirflickr(mirflickr_root, "potential")
    row = prep.labels.filter(prep.labels["image_id"] == "2").row(0, named=True)
    assert (row["dog"], row["sea"], row["night"]) == (1, 1, 0)
    tags2 = prep.metadata_raw.filter(prep.metadata_raw["image_id"] == "2")["text"].to_list()
    assert tags2 == ["Dogs", "the Sea", "owner2"]
    clean = read_mirflickr(mirflickr_root, "potential", tags="clean").metadata_raw
    assert clean.filter(clean["image_id"] == "2")["text"].to_list() == ["dogs", "thesea", "owner2"]


@pytest.mark.parametrize("line, message", [("abc", "line 2: 'abc' is not a positive image number"),
                                           ("0", "line 2: '0' is not a positive image number"),
                                           ("-3", "is not a positive image number"),
                                           ("99", "line 2: image 99 does not exist")])
def test_bad_annotation_lines_name_file_and_line(tmp_path, line, message):
    root = write_mirflickr(tmp_path / "mf", labels={"dog": [1]})
    (root / "mirflickr25k_annotations_v080" / "dog.txt").write_text(f"1\n{line}\n")
    with pytest.raises(MangoError, match=message) as err:
        read_mirflickr(root, "potential")
    assert "dog.txt" in str(err.value)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(MangoError, match="does not exist"):
        read_mirflickr(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MangoError, match="not a MIRFlickr-25k tree"):
        read_mirflickr(tmp_path / "empty")


def test_corrupt_image_is_skipped_and_counted(mirflickr_root):
    jpg = mirflickr_root / "mirflickr" / "im4.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated JPEG
    (mirflickr_root / "mirflickr" / "im5.jpg").write_bytes(b"not an image at all")
    prep, stats = prepare(DatasetParams(root=str(mirflickr_root)))
    assert stats["images_corrupt"] == 2 and stats["images"] == 10
    assert "4" not in prep.images["image_id"].to_list()
    assert "5" not in prep.labels["image_id"].to_list()


def test_split_is_deterministic_and_sized():
    a, b = assign_split(100, 0.3, 7), assign_split(100, 0.3, 7)
    assert (a == b).all() and (a == "test").sum() == 30
    assert not (assign_split(100, 0.3, 8) == a).all()
    assert set(np.unique(a)) == {"train", "test"}
