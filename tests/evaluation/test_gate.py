"""The CI metric gate: drops beyond the tolerance fail, improvements and new methods pass."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import MangoError
from pipeline.evaluation.gate import Row, compare, seed_std, tolerances

ROOT = Path(__file__).resolve().parents[2]


def test_compare_and_fail_rules():
    diff = {"reports/metrics.json": {
        "MangoNet.mAPC": {"old": 0.80, "new": 0.78, "diff": -0.02},
        "MangoNet w/o GF.OF1": {"old": 0.60, "new": 0.595, "diff": -0.005},
        "MangoNet.CP": {"old": 0.9, "new": 0.1, "diff": -0.8},  # not gated
        "NCNN.mAPC": {"old": None, "new": 0.5},
        "KNN.OF1": {"old": 0.4, "new": None},
    }}
    rows = {(r.method, r.metric): r for r in compare(diff, ("mAPC", "OF1"))}
    assert set(rows) == {("MangoNet", "mAPC"), ("MangoNet w/o GF", "OF1"), ("NCNN", "mAPC"), ("KNN", "OF1")}
    assert (rows[("MangoNet", "mAPC")].old, rows[("MangoNet", "mAPC")].new) == (0.80, 0.78)
    assert rows[("MangoNet", "mAPC")].delta == pytest.approx(-0.02)
    assert rows[("MangoNet", "mAPC")].fails(0.01) and not rows[("MangoNet", "mAPC")].fails(0.03)
    assert not rows[("MangoNet w/o GF", "OF1")].fails(0.01)
    assert not rows[("NCNN", "mAPC")].fails(0.0)  # new method
    assert rows[("NCNN", "mAPC")].delta is None and rows[("KNN", "OF1")].delta is None
    assert rows[("KNN", "OF1")].fails(1.0)  # vanished row


# (old, new, seed std, expected tolerance, expected verdict) at floor 1/16 and 2 sigmas; values are
# binary fractions, so "at the border" is exact in floating point: new == old - tolerance passes.
FLOOR, SIGMAS = 0.0625, 2
BORDER_CASES = [
    # std 1/16: 2 sigma = 0.125 > floor, so the tolerance is 0.125
    (0.75, 0.75, 0.0625, 0.125, False),  # unchanged
    (0.75, 0.875, 0.0625, 0.125, False),  # improved
    (0.75, 0.6875, 0.0625, 0.125, False),  # -0.0625: inside 2 sigma, though beyond the floor
    (0.75, 0.625, 0.0625, 0.125, False),  # -0.125: exactly at the border, passes
    (0.75, 0.625 - 2**-20, 0.0625, 0.125, True),  # just beyond it
    # std 1/64: 2 sigma = 1/32 < floor, so the floor 1/16 applies
    (0.5, 0.46875, 0.015625, 0.0625, False),  # -1/32: beyond 2 sigma, inside the floor
    (0.5, 0.4375, 0.015625, 0.0625, False),  # -1/16: at the floor, passes
    (0.5, 0.4375 - 2**-20, 0.015625, 0.0625, True),  # just beyond the floor
    # std 1/32: 2 sigma == floor, both give 1/16
    (0.5, 0.4375, 0.03125, 0.0625, False),
    (0.5, 0.4375 - 2**-20, 0.03125, 0.0625, True),
    # no spread measured for the row: the floor alone
    (0.5, 0.4375, None, 0.0625, False),
    (0.5, 0.4375 - 2**-20, None, 0.0625, True),
]


@pytest.mark.parametrize("old, new, std, tolerance, fails", BORDER_CASES)
def test_tolerance_is_max_of_floor_and_sigmas_times_std(old, new, std, tolerance, fails):
    spread = {} if std is None else {("MangoNet", "mAPC"): std}
    [row] = tolerances([Row("MangoNet", "mAPC", old, new)], floor=FLOOR, sigmas=SIGMAS, std=spread)
    assert row.tolerance == tolerance
    assert row.fails() is fails


def test_spread_of_one_row_does_not_widen_another(tmp_path):
    spread = tmp_path / "seed_spread.json"
    spread.write_text(json.dumps({"spread": {"MangoNet": {"mAPC": {"mean": 0.8, "std": 0.02}, "OF1": {"mean": 0.7, "std": 0.001}}}}))
    std = seed_std(spread)
    assert std == {("MangoNet", "mAPC"): 0.02, ("MangoNet", "OF1"): 0.001}
    rows = tolerances([Row("MangoNet", "mAPC", 0.8, 0.75), Row("MangoNet", "OF1", 0.7, 0.695),
                       Row("NCNN", "mAPC", 0.7, 0.685), Row("MangoNet", "OF1", 0.7, 0.685)], floor=0.01, sigmas=3, std=std)
    # 3 x 0.02 = 0.06; 3 x 0.001 = 0.003 < floor; NCNN unmeasured (MangoNet's 0.02 is not its): floor
    assert [r.tolerance for r in rows] == pytest.approx([0.06, 0.01, 0.01, 0.01])
    # -0.05 within 0.06; -0.005 within the floor; -0.015 beyond the floor (x2)
    assert [r.fails() for r in rows] == [False, False, True, True]
    assert tolerances([Row("MangoNet", "mAPC", 0.8, 0.73)], 0.01, 3, std)[0].fails()  # -0.07 beyond 3 sigma
    spread.write_text("{}")
    with pytest.raises(MangoError, match="seed-spread"):
        seed_std(spread)


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.slow
def test_metrics_diff_command_exit_codes(tmp_path):
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    git(tmp_path, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    metrics = tmp_path / "reports" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"MangoNet": {"mAPC": 0.8, "OF1": 0.7}, "KNN": {"mAPC": 0.5, "OF1": 0.4}}))
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "base")

    def gate(*extra):
        return subprocess.run([sys.executable, "-m", "stages.cli", "metrics-diff", *extra], cwd=tmp_path,
                              capture_output=True, text=True, env=env)

    metrics.write_text(json.dumps({"MangoNet": {"mAPC": 0.795, "OF1": 0.72}, "KNN": {"mAPC": 0.5, "OF1": 0.4}}))
    ok = gate()
    assert ok.returncode == 0, ok.stderr
    assert "| MangoNet | mAPC | 0.8000 | 0.7950 | -0.0050 | 0.0100 | ok |" in ok.stdout

    metrics.write_text(json.dumps({"MangoNet": {"mAPC": 0.70, "OF1": 0.72}, "KNN": {"mAPC": 0.5, "OF1": 0.4}}))
    bad = gate()
    assert bad.returncode == 1
    assert "| MangoNet | mAPC | 0.8000 | 0.7000 | -0.1000 | 0.0100 | **FAIL** |" in bad.stdout
    assert "metric gate FAILED" in bad.stderr
    assert gate("--tolerance", "0.2").returncode == 0

    # with a measured seed spread committed: 3 x 0.02 allows -0.05, still fails -0.1
    spread = tmp_path / "reports" / "seed_spread.json"
    spread.write_text(json.dumps({"spread": {"MangoNet": {"mAPC": {"std": 0.02}}}}))
    metrics.write_text(json.dumps({"MangoNet": {"mAPC": 0.75, "OF1": 0.72}, "KNN": {"mAPC": 0.5, "OF1": 0.4}}))
    assert gate().returncode == 1  # a spread only in the workspace does not widen the gate
    git(tmp_path, "add", str(spread))
    git(tmp_path, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "spread")
    noisy = gate()
    assert noisy.returncode == 0, noisy.stdout
    assert "| MangoNet | mAPC | 0.8000 | 0.7500 | -0.0500 | 0.0600 | ok |" in noisy.stdout
    spread.write_text(json.dumps({"spread": {"MangoNet": {"mAPC": {"std": 0.5}}}}))  # widened in the change itself
    metrics.write_text(json.dumps({"MangoNet": {"mAPC": 0.70, "OF1": 0.72}, "KNN": {"mAPC": 0.5, "OF1": 0.4}}))
    assert gate().returncode == 1
