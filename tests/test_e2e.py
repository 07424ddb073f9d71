"""End to end: `dvc repro` of the real dvc.yaml on a tiny configuration, then `dvc exp run -S m=2`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "m": 2,
    "synthetic": {"n_images": 120, "image_size": 48, "n_topics": 8},
    "lemmatise": {"vocab_size": 200},
    "neighbours": {"k_max": 15, "block_size": 16},
    "backbone": {"input_size": 64},
    "finetune": {"epochs": 1, "batch_size": 16, "num_workers": 0},
    "features": {"batch_size": 32, "num_workers": 0},
    "insatten": {"epochs": 2, "batch_size": 16, "hidden": 32},
    "mangonet": {"batch_size": 16, "hidden": 32},
    "methods": {name: {"epochs": 2} for name in ("mangonet", "ngcn", "mangonet_wo_gf", "mangonet_m3", "mangonet_m7",
                                                 "mangonet_m15")},
}
# Files of reports/ that dvc.yaml reads (written by make targets outside the DAG).
REPORT_INPUTS = ("selection.json", "coattention_variants.json")


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) else v
    return out


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def build_tiny_workspace(work: Path) -> str:
    """The project (dvc.yaml, pipeline/, stages/) in `work` with the TINY params, git and DVC
    initialised, after one `dvc repro`: a trained workspace. Returns the repro's output."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    (work / "reports").mkdir()
    for name in REPORT_INPUTS:
        shutil.copy(ROOT / "reports" / name, work / "reports" / name)
    for package in ("pipeline", "stages"):  # dvc.yaml lists their files as dependencies
        shutil.copytree(ROOT / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], work)
    run(["git", "config", "user.email", "ci@example.invalid"], work)
    run(["git", "config", "user.name", "ci"], work)
    run([*DVC, "init", "-q"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "tiny"], work)
    return run([*DVC, "repro"], work)


DVC = [sys.executable, "-m", "dvc"]


@pytest.mark.slow
def test_dvc_repro_tiny_then_experiment(tiny_workspace, tmp_path):
    trained, out = tiny_workspace
    work = tmp_path / "project"  # a copy: the experiment below changes params and outputs
    shutil.copytree(trained, work, symlinks=True)
    dvc = DVC
    for stage in ("synthesize", "prepare", "lemmatise", "neighbours", "finetune", "features", "insatten", "train@mangonet",
                  "train@ngcn", "train@mangonet_wo_gf", "sweep@mangonet_m3", "report"):
        assert f"stage {stage} finished in" in out, stage
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    from pipeline.methods import all_methods

    assert set(metrics) == {m.title for m in all_methods().values()}  # every registered method ran
    assert len(metrics) == 15
    for row in metrics.values():
        assert set(row) == {"mAPC", "mAPO", "CP", "CR", "CF1", "OP", "OR", "OF1"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert (work / "reports" / "live" / "mangonet" / "plots" / "metrics" / "train_loss.tsv").exists()
    assert "| MangoNet |" in (work / "reports" / "results.md").read_text()
    for fig in ("fig5_ap_mangonet_vs_ncnn.png", "fig6_coattention.png"):
        assert (work / "reports" / "figures" / fig).stat().st_size > 10_000
    assert "stage browse finished in" in out
    page = (work / "reports" / "browse" / "index.html").read_text()
    assert page.count('<article class="card"') >= 20 and "<td>NCNN</td>" in page and "<td>MangoNet</td>" in page

    again = run([*dvc, "repro"], work)
    assert "Data and pipelines are up to date" in again

    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "results"], work)
    exp = run([*dvc, "exp", "run", "-S", "m=1"], work)
    assert "Stage 'neighbours' didn't change, skipping" in exp
    assert "Stage 'finetune' didn't change, skipping" in exp
    assert "Running stage 'train@mangonet'" in exp
    assert "Stage 'sweep@mangonet_m3' didn't change, skipping" in exp
    assert yaml.safe_load((work / "params.yaml").read_text())["m"] == 1
