"""The evaluator: AP against scikit-learn, hand-computed threshold metrics, edge cases, files, CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.errors import MangoError
from pipeline.evaluation.metrics import average_precision, evaluate_files, evaluate_scores, topk_predictions
from pipeline.schemas import METRIC_KEYS
from stages.cli import app

ROOT = Path(__file__).resolve().parents[2]


def approx(d: dict[str, float]) -> dict:
    return {k: pytest.approx(v, abs=1e-12) for k, v in d.items()}


# --- average precision against scikit-learn --------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_map_matches_sklearn_with_heavy_ties(seed):
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((60, 7)), 1)  # 11 distinct values: many ties per column
    truth = (rng.random((60, 7)) < 0.3).astype(np.int64)
    truth[:, 4] = 0  # one label without positives: excluded from mAPC
    truth[0, 0] = 1
    ev = evaluate_scores(scores, truth, [f"l{j}" for j in range(7)])
    per_label = [average_precision_score(truth[:, j], scores[:, j]) for j in range(7) if j != 4]
    assert ev.metrics["mAPC"] == pytest.approx(np.mean(per_label), abs=1e-12)
    assert ev.metrics["mAPO"] == pytest.approx(average_precision_score(truth.ravel(), scores.ravel()), abs=1e-12)
    assert ev.per_label_ap["l4"] is None and ev.excluded_labels == ["l4"]
    for j in (0, 1, 6):
        assert ev.per_label_ap[f"l{j}"] == pytest.approx(average_precision_score(truth[:, j], scores[:, j]), abs=1e-12)


def test_average_precision_single_ranking_matches_sklearn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 40):
        scores = np.round(rng.random(n), 1)
        truth = rng.random(n) < 0.5
        truth[-1] = True
        assert average_precision(scores, truth) == pytest.approx(average_precision_score(truth, scores), abs=1e-12)


def test_average_precision_ties_by_hand():
    # Ranked: {0.8: pos, neg}, {0.5: pos, pos}, {0.2: neg}; 3 positives.
    # Group 1: R = 1/3, P = 1/2. Group 2: R = 3/3, P = 3/4.
    # AP = (1/3)(1/2) + (2/3)(3/4) = 1/6 + 1/2 = 2/3   (a tie-blind ranking could give up to 0.806).
    scores = np.array([0.5, 0.8, 0.2, 0.8, 0.5])
    truth = np.array([1, 0, 0, 1, 1])
    assert average_precision(scores, truth) == pytest.approx(2 / 3)
    # Perfect ranking: 1; all scores tied: AP = prevalence = 2/5.
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == pytest.approx(1.0)
    assert average_precision(np.full(5, 0.3), np.array([1, 0, 0, 1, 0])) == pytest.approx(0.4)


def test_average_precision_without_positives_is_nan():
    assert np.isnan(average_precision(np.array([0.2, 0.9]), np.array([0, 0])))


# --- threshold metrics, hand-computed -----------------------------------------------------------

def test_threshold_metrics_by_hand():
    scores = np.array([[0.9, 0.6, 0.1],    # predicts a, b
                       [0.2, 0.7, 0.8],    # predicts b, c
                       [0.55, 0.3, 0.4],   # predicts a
                       [0.1, 0.2, 0.3]])   # predicts nothing
    truth = np.array([[1, 0, 0],
                      [0, 1, 1],
                      [0, 1, 0],
                      [1, 0, 1]])
    # a: Nc 1 (img0), Np 2, Ng 2;  b: Nc 1 (img1), Np 2, Ng 2;  c: Nc 1 (img1), Np 1, Ng 2.
    # OP = 3/5, OR = 3/6, OF1 = 2(.6)(.5)/1.1 = 6/11.
    # CP = (1/2 + 1/2 + 1)/3 = 2/3, CR = (1/2 + 1/2 + 1/2)/3 = 1/2, CF1 = (2/3)/(7/6) = 4/7.
    ev = evaluate_scores(scores, truth, ["a", "b", "c"])
    m = ev.metrics
    assert list(m) == list(METRIC_KEYS)
    assert {k: m[k] for k in ("OP", "OR", "OF1", "CP", "CR", "CF1")} == approx(
        {"OP": 3 / 5, "OR": 1 / 2, "OF1": 6 / 11, "CP": 2 / 3, "CR": 1 / 2, "CF1": 4 / 7})
    assert ev.n_images == 4 and ev.n_labels == 3 and ev.excluded_labels == []
    assert any("1 of 4 image(s)" in n for n in ev.notes)


def test_top_k_limits_predictions_and_unpredicted_labels_have_precision_zero():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.55],   # five labels >= 0.5, top-3 keeps l0 l1 l2
                       [0.1, 0.1, 0.1, 0.1, 0.1]])   # nothing >= 0.5: predicts nothing
    truth = np.array([[1, 0, 0, 1, 0],
                      [0, 1, 1, 0, 1]])
    # l0: Nc 1 Np 1 Ng 1; l1, l2: Nc 0 Np 1 Ng 1; l3, l4: never predicted (P = 0), Ng 1.
    # OP = 1/3, OR = 1/5, OF1 = 2(1/15)/(8/15) = 1/4.  (Without top-k: OP = 2/5, OR = 2/5.)
    # CP = (1 + 0 + 0 + 0 + 0)/5 = 1/5, CR = 1/5, CF1 = 1/5.
    ev = evaluate_scores(scores, truth, ["l0", "l1", "l2", "l3", "l4"], top_k=3)
    assert {k: ev.metrics[k] for k in ("OP", "OR", "OF1", "CP", "CR", "CF1")} == approx(
        {"OP": 1 / 3, "OR": 1 / 5, "OF1": 1 / 4, "CP": 1 / 5, "CR": 1 / 5, "CF1": 1 / 5})
    assert any("never predicted" in n and "l3, l4" in n for n in ev.notes)
    assert any("1 of 2 image(s)" in n for n in ev.notes)
    # A larger top_k lets l3 and l4 in: l3 correct. OP = 2/5, OR = 2/5.
    ev5 = evaluate_scores(scores, truth, ["l0", "l1", "l2", "l3", "l4"], top_k=5)
    assert ev5.metrics["OP"] == pytest.approx(2 / 5) and ev5.metrics["OR"] == pytest.approx(2 / 5)


def test_top_k_ties_go_to_the_lower_label_index_and_zero_f1():
    scores = np.array([[0.6, 0.6, 0.6, 0.6]])
    assert topk_predictions(scores, 3, 0.5).tolist() == [[True, True, True, False]]
    # The only positive is l3, which loses the tie: Nc = 0, so OP = OR = 0 and F1 = 0, not nan.
    ev = evaluate_scores(scores, np.array([[0, 0, 0, 1]]), ["l0", "l1", "l2", "l3"])
    assert ev.metrics["OP"] == 0.0 and ev.metrics["OR"] == 0.0 and ev.metrics["OF1"] == 0.0
    assert ev.metrics["CP"] == 0.0 and ev.metrics["CF1"] == 0.0


def test_score_exactly_at_threshold_is_predicted():
    # l0 (0.5) is predicted, l1 (0.4999) is not: OP = 1/1, OR = 1/2; CP = (1 + 0)/2, CR = (1 + 0)/2.
    ev = evaluate_scores(np.array([[0.5, 0.4999]]), np.array([[1, 1]]), ["l0", "l1"])
    assert {k: ev.metrics[k] for k in ("OP", "OR", "CP", "CR")} == approx({"OP": 1.0, "OR": 0.5, "CP": 0.5, "CR": 0.5})


def test_no_prediction_at_all_gives_zero_precision():
    ev = evaluate_scores(np.array([[0.3, 0.1], [0.2, 0.4]]), np.array([[1, 0], [0, 1]]), ["a", "b"])
    assert {k: ev.metrics[k] for k in ("OP", "OR", "OF1", "CP", "CR", "CF1")} == approx(dict.fromkeys(
        ("OP", "OR", "OF1", "CP", "CR", "CF1"), 0.0))
    assert ev.metrics["mAPC"] == pytest.approx(1.0)  # the ranking is still perfect


def test_label_without_positive_is_excluded_and_noted():
    scores = np.array([[0.9, 0.2, 0.8],
                       [0.1, 0.7, 0.3]])
    truth = np.array([[1, 0, 0],
                      [0, 1, 0]])
    # Predictions: img0 a, lake; img1 b.  a: Nc1 Np1 Ng1; b: Nc1 Np1 Ng1; lake: Nc0 Np1 Ng0.
    # CP = CR = (1 + 1)/2 = 1 (lake excluded; with it CP would be 2/3).
    # OP = 2/3 (lake's prediction is a false positive), OR = 2/2, OF1 = 2(2/3)/(5/3) = 4/5.
    # mAPC = mean(AP a = 1, AP b = 1) = 1.
    # mAPO: flattened ranking 0.9+ 0.8- 0.7+ 0.3- 0.2- 0.1-: AP = (1/1 + 2/3)/2 = 5/6.
    ev = evaluate_scores(scores, truth, ["a", "b", "lake"])
    assert ev.metrics == approx({"mAPC": 1.0, "mAPO": 5 / 6, "CP": 1.0, "CR": 1.0, "CF1": 1.0,
                                 "OP": 2 / 3, "OR": 1.0, "OF1": 4 / 5})
    assert ev.excluded_labels == ["lake"]
    assert ev.per_label_ap == {"a": 1.0, "b": 1.0, "lake": None}
    assert any("'lake'" in n and "excluded from mAPC, CP and CR" in n for n in ev.notes)


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("scores, truth, match", [
    ([[0.1, np.nan], [0.2, 0.3]], [[1, 0], [0, 1]], r"row 0, label 'b' is nan; expected a finite number"),
    ([[0.1, 0.2], [np.inf, 0.3]], [[1, 0], [0, 1]], r"row 1, label 'a' is inf"),
    ([[0.1, 0.2], [0.2, 0.3]], [[1, 0], [0, 2]], r"truth for row 1, label 'b' is 2.0; expected 0 or 1"),
    ([[0.1, 0.2], [0.2, 0.3]], [[0, 0], [0, 0]], r"no label has a positive image"),
    ([[0.1, 0.2], [0.2, 0.3]], [[1, 0]], r"scores have shape \(2, 2\) but truth has shape \(1, 2\)"),
])
def test_bad_arrays_raise(scores, truth, match):
    with pytest.raises(MangoError, match=match):
        evaluate_scores(np.array(scores), np.array(truth), ["a", "b"])


def test_bad_options_raise():
    with pytest.raises(MangoError, match="top_k must be >= 1, got 0"):
        evaluate_scores(np.array([[0.1]]), np.array([[1]]), ["a"], top_k=0)
    with pytest.raises(MangoError, match="2 label names for 1 score columns"):
        evaluate_scores(np.array([[0.1]]), np.array([[1]]), ["a", "b"])


# --- files ------------------------------------------------------------------------------------

TRUTH = {"image_id": ["i1", "i2", "i3", "i4"], "a": [1, 0, 1, 0], "b": [0, 1, 1, 0], "c": [0, 0, 1, 1]}
PRED = {"image_id": ["i1", "i2", "i3", "i4"], "a": [0.9, 0.2, 0.6, 0.1], "b": [0.3, 0.8, 0.4, 0.6],
        "c": [0.2, 0.1, 0.7, 0.5]}


def write(path: Path, data: dict) -> Path:
    pl.DataFrame(data).write_parquet(path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "pred.parquet", PRED), write(tmp_path / "truth.parquet", TRUTH)


def test_files_align_rows_and_columns_by_truth(tmp_path, files):
    expected = evaluate_scores(pl.DataFrame(PRED).drop("image_id").to_numpy(),
                               pl.DataFrame(TRUTH).drop("image_id").to_numpy(), ["a", "b", "c"])
    assert evaluate_files(*files).metrics == expected.metrics
    # Rows reversed, columns reordered, boolean truth: same result.
    shuffled = pl.DataFrame(PRED).reverse().select("c", "image_id", "a", "b")
    write(tmp_path / "pred2.parquet", shuffled.to_dict(as_series=False))
    bool_truth = pl.DataFrame(TRUTH).with_columns(pl.col("a", "b", "c").cast(pl.Boolean))
    bool_truth.write_parquet(tmp_path / "truth2.parquet")
    ev = evaluate_files(tmp_path / "pred2.parquet", tmp_path / "truth2.parquet")
    assert ev.metrics == expected.metrics and list(ev.per_label_ap) == ["a", "b", "c"]


@pytest.mark.parametrize("pred_edit, truth_edit, match", [
    (lambda d: {k: v for k, v in d.items() if k != "b"} | {"x": [0.1] * 4}, None,
     r"pred.parquet: label columns differ from the truth: missing label column\(s\) b .*extra column\(s\) x"),
    (lambda d: {k: v[:3] for k, v in d.items()}, None, r"pred.parquet: no scores for 1 image id\(s\): 'i4'"),
    (lambda d: d | {"image_id": ["i1", "i2", "i3", "zz"]}, None, r"no scores for 1 image id\(s\): 'i4'"),
    (None, lambda d: {k: v[:2] for k, v in d.items()}, r"scores 2 image id\(s\): 'i3', 'i4' that are not in"),
    (lambda d: d | {"image_id": ["i1", "i2", "i2", "i4"]}, None, r"pred.parquet: image_id 'i2' appears more than once"),
    (lambda d: d | {"b": [0.1, None, 0.2, 0.3]}, None, r"pred.parquet: column 'b' is null for image 'i2'"),
    (lambda d: d | {"c": [0.1, float("nan"), 0.2, 0.3]}, None, r"score for image 'i2', label 'c' is nan"),
    (None, lambda d: d | {"a": [1, 0, 2, 0]}, r"truth.parquet: truth for image 'i3', label 'a' is 2.0; expected 0 or 1"),
    (lambda d: {k: v for k, v in d.items() if k != "image_id"}, None, r"pred.parquet: missing column 'image_id'"),
    (None, lambda d: d | {"a": ["1", "0", "1", "0"]}, r"label column 'a' has type String, expected numbers"),
])
def test_bad_files_raise(tmp_path, pred_edit, truth_edit, match):
    pred = write(tmp_path / "pred.parquet", pred_edit(dict(PRED)) if pred_edit else PRED)
    truth = write(tmp_path / "truth.parquet", truth_edit(dict(TRUTH)) if truth_edit else TRUTH)
    with pytest.raises(MangoError, match=match):
        evaluate_files(pred, truth)


def test_many_unknown_ids_are_counted_and_five_named(tmp_path):
    ids = [f"i{n}" for n in range(1, 11)]
    truth = write(tmp_path / "truth.parquet", {"image_id": ids[:3], "a": [1, 0, 1]})
    pred = write(tmp_path / "pred.parquet", {"image_id": ids, "a": [0.5] * 10})
    with pytest.raises(MangoError, match=r"scores 7 image id\(s\): 'i4', 'i5', 'i6', 'i7', 'i8', \.\.\. that"):
        evaluate_files(pred, truth)


def test_missing_file(tmp_path, files):
    with pytest.raises(MangoError, match=r"nope.parquet: file not found"):
        evaluate_files(tmp_path / "nope.parquet", files[1])


# --- command ----------------------------------------------------------------------------------

def test_cli_writes_the_eight_metrics_and_logs_notes(tmp_path, files, caplog):
    truth = write(tmp_path / "truth.parquet", TRUTH | {"lake": [0, 0, 0, 0]})
    pred = write(tmp_path / "pred.parquet", PRED | {"lake": [0.9, 0.1, 0.1, 0.1]})
    out = tmp_path / "out" / "M.json"
    caplog.set_level(logging.INFO, logger="mango")
    result = CliRunner().invoke(app, ["evaluate", "--predictions", str(pred), "--truth", str(truth),
                                      "--out", str(out), "--top-k", "2", "--threshold", "0.55"])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert list(written) == list(METRIC_KEYS)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in written.values())
    assert written == evaluate_files(pred, truth, top_k=2, threshold=0.55).metrics
    assert written != evaluate_files(pred, truth).metrics  # the options reached the evaluator
    assert "mAPC" in caplog.text and "label 'lake' has no positive image" in caplog.text
    assert [p.name for p in out.parent.iterdir()] == ["M.json"]  # no temporary file left behind


def test_cli_bad_file_prints_error_without_traceback(tmp_path, files):
    write(tmp_path / "bad.parquet", {"image_id": ["i1"], "a": [0.5]})  # lacks b and c, and rows
    out = tmp_path / "M.json"
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "evaluate", "--predictions", str(tmp_path / "bad.parquet"),
                           "--truth", str(files[1]), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "missing label column(s) b, c" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
