"""The CI metric gate: drops beyond the tolerance fail, improvements and new methods pass."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import MangoError
from pipeline.gate import Row, compare, seed_std, tolerances

ROOT = Path(__file__).resolve().parents[1]


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
    assert rows[("MangoNet", "mAPC")].fails(0.01) and not rows[("MangoNet", "mAPC")].fails(0.03)
    assert not rows[("MangoNet w/o GF", "OF1")].fails(0.01)
    assert not rows[("NCNN", "mAPC")].fails(0.0)  # new method
    assert rows[("KNN", "OF1")].fails(1.0)  # vanished row
    assert Row("A", "mAPC", 0.5, 0.7).delta == pytest.approx(0.2)


def test_tolerance_is_sigmas_times_the_seed_std_with_a_floor(tmp_path):
    spread = tmp_path / "seed_spread.json"
    spread.write_text(json.dumps({"spread": {"MangoNet": {"mAPC": {"mean": 0.8, "std": 0.02}, "OF1": {"mean": 0.7, "std": 0.001}}}}))
    std = seed_std(spread)
    assert std == {("MangoNet", "mAPC"): 0.02, ("MangoNet", "OF1"): 0.001}
    rows = tolerances([Row("MangoNet", "mAPC", 0.8, 0.75), Row("MangoNet", "OF1", 0.7, 0.69),
                       Row("NCNN", "mAPC", 0.7, 0.685)], floor=0.01, sigmas=3, std=std)
    assert [r.tolerance for r in rows] == pytest.approx([0.06, 0.01, 0.01])  # 3 sigma; floor; unmeasured: floor
    assert [r.fails() for r in rows] == [False, False, True]
    assert tolerances([Row("MangoNet", "mAPC", 0.8, 0.73)], 0.01, 3, std)[0].fails()  # beyond 3 sigma
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
