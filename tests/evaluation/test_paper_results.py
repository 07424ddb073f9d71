"""The transcribed paper numbers (Tables 1-6): shape, ranges, internal consistency, claims and spot values."""

from __future__ import annotations

import pytest

from pipeline.schemas import METRIC_KEYS
from pipeline.evaluation.paper import PUBLISHED, TABLES

DATASETS = ("nuswide", "mirflickr", "coco")
COMPARISON = ("Meta+Logistic", "KNN", "Multi-CNN", "CNN Voting", "TagProp", "Link-CRF", "SRN", "NCNN",
              "MangoNet-m3", "MangoNet-m7", "MangoNet-m15")
ABLATION = ("NGCN", "MangoNet w/o GF", "InsAtten")
MANGONET = ("MangoNet-m3", "MangoNet-m7", "MangoNet-m15")
THRESHOLD_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")

ROWS = [(d, m) for d in DATASETS for m in COMPARISON + ABLATION]


def test_datasets_and_table_numbers():
    assert set(PUBLISHED) == set(DATASETS)
    assert TABLES == {"nuswide": (1, 4), "mirflickr": (2, 5), "coco": (3, 6)}


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_method_row_present(dataset):
    assert set(PUBLISHED[dataset]) == set(COMPARISON + ABLATION)


@pytest.mark.parametrize(("dataset", "method"), ROWS)
def test_row_has_the_eight_metrics_in_range(dataset, method):
    row = PUBLISHED[dataset][method]
    assert set(row) == set(METRIC_KEYS)
    for key, value in row.items():
        if value is None:
            assert method == "KNN" and key in THRESHOLD_KEYS, (dataset, method, key)
        else:
            assert isinstance(value, float) and 0.0 < value < 1.0, (dataset, method, key, value)
            assert round(value, 3) == value  # printed with three decimals


@pytest.mark.parametrize("dataset", DATASETS)
def test_knn_has_only_the_map_numbers(dataset):
    knn = PUBLISHED[dataset]["KNN"]
    assert all(knn[k] is None for k in THRESHOLD_KEYS)
    assert knn["mAPC"] is not None and knn["mAPO"] is not None


@pytest.mark.parametrize(("dataset", "method"), ROWS)
def test_of1_is_harmonic_mean_of_op_and_or(dataset, method):
    row = PUBLISHED[dataset][method]
    if row["OP"] is None:
        pytest.skip("no threshold metrics (KNN)")
    op, or_ = row["OP"], row["OR"]
    assert row["OF1"] == pytest.approx(2 * op * or_ / (op + or_), abs=0.003)


@pytest.mark.parametrize(("dataset", "method"), ROWS)
def test_cf1_is_mean_of_per_label_f1_not_harmonic_mean(dataset, method):
    # The paper's CF1 sits below 2*CP*CR/(CP+CR) on every row (by 0.010-0.057): it averages per-label F1s.
    row = PUBLISHED[dataset][method]
    if row["CP"] is None:
        pytest.skip("no threshold metrics (KNN)")
    cp, cr = row["CP"], row["CR"]
    assert row["CF1"] < 2 * cp * cr / (cp + cr)
    assert min(cp, cr) - 0.1 < row["CF1"] <= max(cp, cr)


@pytest.mark.parametrize(("dataset", "method"), ROWS)
def test_map_per_label_below_overall(dataset, method):
    # How the scrambled (mAPC, mAPO) pairs were resolved; see the module docstring (MIRFlickr is assumed).
    row = PUBLISHED[dataset][method]
    assert row["mAPC"] < row["mAPO"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("metric", ("mAPC", "mAPO", "OF1"))
def test_mangonet_best_on_overall_metrics(dataset, metric):
    # Sec. 4.3: "our proposed models, noted as the MangoNet, achieve the best performances on the overall
    # evaluation metrics mAPC, mAPO and OF1 on all three datasets."
    table = PUBLISHED[dataset]
    best = max(table[m][metric] for m in MANGONET)
    for method in COMPARISON:
        if method not in MANGONET and table[method][metric] is not None:
            assert best >= table[method][metric], (dataset, metric, method)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("metric", ("mAPC", "mAPO", "OF1"))
def test_full_model_beats_ablations(dataset, metric):
    # Sec. 4.4: the full MangoNet (m = 3) "achieves the best performance" against NGCN, w/o GF and InsAtten.
    # One exception is printed in the paper itself: on NUS-WIDE (Table 4) NGCN's mAPO 0.807 is 0.001 above
    # MangoNet's 0.806 (the pair "0.807 0.612" cannot be read the other way: mAPO 0.612 < mAPC 0.807).
    table = PUBLISHED[dataset]
    for method in ABLATION:
        if (dataset, metric, method) == ("nuswide", "mAPO", "NGCN"):
            assert (table[method][metric], table["MangoNet-m3"][metric]) == (0.807, 0.806)
        else:
            assert table["MangoNet-m3"][metric] > table[method][metric], (dataset, metric, method)


@pytest.mark.parametrize(("dataset", "method", "metric", "value"), [
    # Labelled header block before Table 1 ("CP 0.679 - CR 0.393 - CF1 0.475 - OP 0.768 - OR 0.450 - OF1 0.567 -")
    ("nuswide", "Meta+Logistic", "CP", 0.679),
    ("nuswide", "Meta+Logistic", "OF1", 0.567),
    # Table 1 "mAPC mAPO" block: first pair "0.527 0.667", last pair "0.628 0.808"
    ("nuswide", "Meta+Logistic", "mAPC", 0.527),
    ("nuswide", "MangoNet-m15", "mAPC", 0.628),
    ("nuswide", "MangoNet-m15", "mAPO", 0.808),
    # Table 4 (labelled columns): MangoNet row "CP 0.715 CR 0.419 CF1 0.507 OP 0.802 OR 0.599 OF1 0.686"
    ("nuswide", "MangoNet-m3", "CR", 0.419),
    ("nuswide", "MangoNet-m3", "OF1", 0.686),
    ("nuswide", "MangoNet w/o GF", "CF1", 0.412),
    # Table 1, 9-number column starting 0.693 (CP), last entry = MangoNet-m15
    ("nuswide", "MangoNet-m15", "CP", 0.739),
    # Labelled header block before Table 2 ("CP 0.771 - CR 0.334 - ... OF1 0.601 -")
    ("mirflickr", "Meta+Logistic", "CR", 0.334),
    # Table 5 (labelled columns): MangoNet "CP 0.870 ... OF1 0.843", NGCN OP 0.866
    ("mirflickr", "MangoNet-m3", "CP", 0.870),
    ("mirflickr", "MangoNet-m3", "OF1", 0.843),
    ("mirflickr", "NGCN", "OP", 0.866),
    # Table 2, third 9-number column (starts 0.889, CP): TagProp's outlying OF1 0.704 in the first column
    ("mirflickr", "TagProp", "OF1", 0.704),
    ("mirflickr", "TagProp", "OR", 0.594),
    # Labelled header block before Table 3 ("CP 0.851 - ... OF1 0.696 -")
    ("coco", "Meta+Logistic", "OP", 0.882),
    # Table 3: SRN row (5th entry of each 9-number column; equals SRN's own top-3 MS-COCO numbers)
    ("coco", "SRN", "mAPC", 0.771),
    ("coco", "SRN", "CF1", 0.674),
    ("coco", "SRN", "OF1", 0.729),
    # Table 6 (labelled columns): MangoNet "CP 0.871 CR 0.579 CF1 0.676 OP 0.895 OR 0.619 OF1 0.732"
    ("coco", "MangoNet-m3", "OP", 0.895),
    ("coco", "MangoNet-m3", "CF1", 0.676),
    ("coco", "InsAtten", "OR", 0.603),
    # Table 3: last entry of the CF1 column (starts 0.646) and of the OP column (starts 0.848)
    ("coco", "MangoNet-m15", "CF1", 0.680),
    ("coco", "MangoNet-m7", "OP", 0.902),
])
def test_spot_values(dataset, method, metric, value):
    assert PUBLISHED[dataset][method][metric] == value
