"""The `mango` command line: every stage is there, dvc.yaml only calls `mango`, errors are clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from stages.cli import COMMANDS, app

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def mango(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_stage():
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    for name, _, _ in COMMANDS:
        assert name in out


def test_every_dvc_stage_is_a_mango_command():
    names = {name for name, _, _ in COMMANDS}
    for stage, spec in DVC["stages"].items():
        cmd = spec["cmd"].split()
        assert cmd[0] == "mango", stage
        assert cmd[1] in names, f"{stage}: unknown sub-command {cmd[1]}"


TRAIN_STAGES = ("train", "nbr_baseline", "baseline", "attention_baseline", "sweep")


def matrix_methods(stage: str) -> list[str]:
    """The methods of a matrix stage: its `${list}` resolved against dvc.yaml's vars."""
    value = DVC["stages"][stage]["matrix"]["method"]
    assert isinstance(value, str) and value.startswith("${"), f"{stage}: the method list belongs in vars"
    variables = {k: v for block in DVC["vars"] for k, v in block.items()}
    return variables[value[2:-1]]


def test_train_matrices_run_registered_methods():
    """The method lists of dvc.yaml's vars are the registry's trainable methods, each in its stage."""
    from pipeline.methods import all_methods

    methods = all_methods()
    for stage in TRAIN_STAGES:
        for name in matrix_methods(stage):
            assert methods[name].train is not None and methods[name].stage == stage, name
            assert (methods[name].m is None) == (stage != "sweep"), name
            assert methods[name].uses_neighbours == (stage in ("train", "nbr_baseline", "sweep")), name
            assert methods[name].uses_attention == (stage in ("train", "attention_baseline", "sweep")), name
    trainable = {n for n, mth in methods.items() if mth.train is not None}
    matrixed = [n for s in TRAIN_STAGES for n in matrix_methods(s)]
    assert sorted(matrixed) == sorted(trainable)  # each once


def test_stages_depend_on_what_they_read():
    """A stage lists the stores it passes to `mango train`, and no other: KNN, TagProp, SRN and
    Meta+Logistic do not re-run when the neighbour search changes."""
    for stage in TRAIN_STAGES:
        spec = DVC["stages"][stage]
        cmd, deps = spec["cmd"].split(), spec["deps"]
        for flag, path in (("--neighbours", "data/processed/neighbours.parquet"), ("--attention", "data/attention"),
                           ("--nodes", "data/nodes")):
            assert (flag in cmd) == (path in deps), (stage, flag)
        assert "pipeline/methods" not in deps, stage  # the method's own file, not the whole package
    assert "data/processed/neighbours.parquet" not in DVC["stages"]["baseline"]["deps"]
    assert "data/processed/neighbours.parquet" not in DVC["stages"]["attention_baseline"]["deps"]


def test_report_scores_every_predictions_output():
    """The report stage reads the predictions folder, and every stage writing predictions writes
    `<method>.parquet` there for a registered method (the report scores them all)."""
    from pipeline.methods import all_methods

    written = set()
    for stage, spec in DVC["stages"].items():
        items = matrix_methods(stage) if "matrix" in spec else [None]
        for item in items:
            for out in spec.get("outs", []):
                path = out if isinstance(out, str) else next(iter(out))
                if path.startswith("data/predictions/"):
                    written.add(Path(path.replace("${item.method}", item or "")).stem)
    assert written == set(all_methods())
    report = DVC["stages"]["report"]
    assert "data/predictions" in report["deps"] and "--predictions-dir data/predictions" in report["cmd"]
    assert "data/predictions/" not in report["cmd"] and not any(d.startswith("data/predictions/") for d in report["deps"])


def test_plots_cover_every_trainer():
    """dvc.yaml's top-level plots (DVC takes no matrix there) chart every trainer with per-epoch curves."""
    from pipeline.methods import all_methods

    trainers = {"finetune", "insatten"} | {n for n, m in all_methods().items() if m.train is not None} - {"knn", "cnnvoting"}
    for plot in DVC["plots"]:
        (name, spec), = plot.items()
        files = {Path(p).parts[2] for p in spec["y"]}  # reports/live/<trainer>/plots/metrics/<name>.tsv
        assert files == trainers, name


def test_only_neighbour_stages_list_m():
    """`dvc exp run -S m=7` must re-run training and evaluation, not the neighbour search."""
    from pipeline.methods import all_methods

    neighbour_stages = {"train", "nbr_baseline"}  # sweep@ rows fix their own m
    assert all_methods()["mangonet"].uses_neighbours
    for stage, spec in DVC["stages"].items():
        listed = "m" in spec.get("params", [])
        assert listed == (stage in neighbour_stages), stage
    assert "neighbours.k_max" in DVC["stages"]["neighbours"]["cmd"].replace("${", "").replace("}", "")


@pytest.mark.parametrize("override, message", [
    ({"m": 0}, "m must be between 1 and neighbours.k_max (15), got 0"),
    ({"m": 20}, "m must be between 1 and neighbours.k_max (15), got 20"),
    ({"backbone": {"arch": "ResNet-11"}}, "backbone.arch must be a torchvision model name such as mobilenet_v2 or resnet101, got 'ResNet-11'"),
    ({"dataset": {"root": "no/such/folder"}}, "dataset.root: 'no/such/folder' does not exist"),
])
def test_bad_input_is_one_clear_line(tmp_path, override, message):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in override.items():
        if isinstance(value, dict):
            params[key].update(value)
        else:
            params[key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = mango("prepare", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_annotation_through_the_command(tmp_path):
    from tests.conftest import write_mirflickr

    root = write_mirflickr(tmp_path / "mf")
    (root / "mirflickr25k_annotations_v080" / "sea.txt").write_text("2\n4\nx7\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["root"] = str(root)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = mango("prepare", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sea.txt, line 3: 'x7' is not a positive image number" in proc.stderr
