"""End to end on the real-dataset adapters: `dvc repro report` with dataset.name nuswide / coco.

Each run writes a tiny tree in the official layout (tests/dataset_fixtures.py, awkward parts
included) under the temporary project's data/raw/, points params.yaml at it and reproduces the
project's own dvc.yaml through prepare -> lemmatise -> neighbours -> finetune -> features ->
insatten -> train@mangonet -> report. To keep each run short, the copy of
dvc.yaml is cut to that chain: the train matrix keeps only mangonet, the other method stages and
the figures are removed, and report scores the predictions that remain (Multi-CNN, InsAtten,
MangoNet). Every other stage definition is the repository's. Each run costs about 50 s of CPU
(most of it starting Python, torch and WordNet in eight stage processes), so about a minute of
wall time on an idle two-core machine.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.helpers import write_coco, write_groups, write_nuswide
from tests.test_e2e import REPORT_INPUTS, ROOT, TINY, merge, run

CHAIN = ("prepare", "lemmatise", "neighbours", "finetune", "features", "insatten", "train@mangonet", "report")


def reduced_dvc_yaml(dvc: dict) -> dict:
    """The project's DAG cut to the chain above (see the module docstring): the report scores the
    predictions folder, so it scores what the kept stages write."""
    stages = dvc["stages"]
    stages["train"]["matrix"]["method"] = ["mangonet"]
    for name in ("nbr_baseline", "baseline", "attention_baseline", "sweep", "figures", "browse"):
        stages.pop(name, None)
    return dvc


def project(tmp_path: Path, dataset: dict) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    dvc_yaml = reduced_dvc_yaml(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    (work / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (work / "reports").mkdir()
    for name in REPORT_INPUTS:
        shutil.copy(ROOT / "reports" / name, work / "reports" / name)
    for package in ("pipeline", "stages"):
        shutil.copytree(ROOT / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    tiny = merge(TINY, {"lemmatise": {"vocab_size": 100}, "finetune": {"epochs": 1}})
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), tiny)
    params["dataset"] = merge(params["dataset"], dataset)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def repro(work: Path) -> tuple[str, float]:
    dvc = [sys.executable, "-m", "dvc"]
    run(["git", "init", "-q"], work)
    run(["git", "config", "user.email", "ci@example.invalid"], work)
    run(["git", "config", "user.name", "ci"], work)
    run([*dvc, "init", "-q"], work)
    run(["git", "add", "-A"], work)  # dvclive (the training stages) needs a commit
    run(["git", "commit", "-qm", "tiny"], work)
    start = time.perf_counter()
    out = run([*dvc, "repro", "report"], work)
    return out, time.perf_counter() - start


def check_metrics(work: Path, out: str) -> dict:
    for stage in CHAIN:
        assert f"Running stage '{stage}'" in out, stage
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"Multi-CNN", "InsAtten", "MangoNet"}
    for row in metrics.values():
        assert set(row) == {"mAPC", "mAPO", "CP", "CR", "CF1", "OP", "OR", "OF1"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    return json.loads((work / "data" / "prepared" / "stats.json").read_text())


@pytest.mark.slow
def test_nuswide_fixture_through_dvc_repro(tmp_path):
    work = project(tmp_path, {"name": "nuswide", "root": "data/raw/nuswide", "groups": "data/raw/crawl"})
    nus = write_nuswide(work / "data" / "raw" / "nuswide", n=64, concepts=("sky", "dog", "lake", "car"), size=48)
    write_groups(work / "data" / "raw" / "crawl", {pid: [f"{nus.folders[i].title()} Photography"]
                                                    for i, pid in enumerate(nus.ids[:20])})
    (nus.root / "SYNTHETIC.txt").write_text("test fixture\n")  # results.md then omits the paper's numbers
    out, seconds = repro(work)
    stats = check_metrics(work, out)
    assert stats["dataset"] == "nuswide" and stats["split"] == "official"
    assert stats["adapter_counts"]["duplicate_ids_dropped"] == 1 and stats["adapter_counts"]["malformed_label_lines"] == 1
    assert (stats["train"], stats["test"]) == (32, 32)
    assert stats["labels"] == ["sky", "dog", "lake", "car"]
    raw = work / "data" / "prepared" / "metadata_raw.parquet"
    assert pl.read_parquet(raw).filter(pl.col("field") == "groups").height == 20
    print(f"nuswide: dvc repro report took {seconds:.0f} s")


@pytest.mark.slow
def test_coco_fixture_through_dvc_repro(tmp_path):
    work = project(tmp_path, {"name": "coco", "root": "data/raw/coco"})
    coco = write_coco(work / "data" / "raw" / "coco", n_train=33, n_val=32, size=48)
    (coco.root / "SYNTHETIC.txt").write_text("test fixture\n")
    out, seconds = repro(work)
    stats = check_metrics(work, out)
    assert stats["dataset"] == "coco" and stats["split"] == "official"
    assert stats["adapter_counts"]["train2014_no_instances_dropped"] == 1
    assert (stats["train"], stats["test"]) == (32, 32)
    assert stats["labels"] == ["person", "car", "traffic light", "dog", "toothbrush"]
    print(f"coco: dvc repro report took {seconds:.0f} s")
