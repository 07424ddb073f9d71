"""MIRFlickr-25k as the paper uses it: the 24 potential vs the 14 relevant (`_r1`) label sets, and
section 4.1's filtering (images without tags or without labels are dropped, counted)."""

import pytest

from pipeline.config import DatasetParams
from pipeline.data.datasets.mirflickr import POTENTIAL_LABELS
from pipeline.text.lemmatise import lemmatise
from pipeline.data.prepare import prepare
from tests.conftest import write_mirflickr

# The 14 labels of the official release that have a `_r1` ("relevant") annotation file.
RELEVANT = ("baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people", "portrait",
            "river", "sea", "tree")


@pytest.fixture
def full_release(tmp_path):
    """12 images; every potential label file and every _r1 file exists, as in the release.
    Image 1: relevant dog; 2: potential-only sky; 3: no label; 4: no tags; 5: stop-word tags only."""
    labels = {name: [] for name in POTENTIAL_LABELS} | {f"{name}_r1": [] for name in RELEVANT}
    labels["dog"] += [1, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    labels["dog_r1"] += [1, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    labels["sky"] += [2]
    tags = {i: ["Dogs", f"owner{i}"] for i in range(1, 13)}
    tags[2] = ["Blue Skies"]
    tags.pop(4)  # no tags file at all
    tags[5] = ["the", "and", "2008"]  # nothing left after stop words and digits
    return write_mirflickr(tmp_path / "mf", labels=labels, tags=tags)


def test_potential_and_relevant_label_sets(full_release):
    _, pot = prepare(DatasetParams(root=str(full_release), labels="potential"))
    _, rel = prepare(DatasetParams(root=str(full_release), labels="relevant"))
    assert pot["labels"] == sorted(POTENTIAL_LABELS) and len(pot["labels"]) == 24
    assert rel["labels"] == sorted(RELEVANT) and len(rel["labels"]) == 14
    assert pot["split"].startswith("random") and rel["label_set"] == "relevant"


@pytest.mark.parametrize("label_set, dropped_no_labels", [("potential", 1), ("relevant", 2)])
def test_images_without_tags_or_labels_are_dropped(full_release, label_set, dropped_no_labels):
    prep, _ = prepare(DatasetParams(root=str(full_release), labels=label_set))
    out = lemmatise(prep.images, prep.labels, prep.metadata_raw, vocab_size=50)
    kept = set(out.metadata["image_id"].to_list())
    assert out.stats["dropped_no_metadata"] == 2 and not {"4", "5"} & kept  # no tags / junk tags only
    assert out.stats["dropped_no_labels"] == dropped_no_labels and "3" not in kept
    assert ("2" in kept) == (label_set == "potential")  # sky is a potential label without an _r1 file
    assert out.stats["images_out"] == 12 - 2 - dropped_no_labels
