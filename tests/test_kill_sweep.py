"""SIGKILL the stages that write stores at a random moment: `dvc repro` recovers, with identical
outputs and no temporary files left (scripts/kill_sweep.py)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _kill_sweep():
    spec = importlib.util.spec_from_file_location("kill_sweep", ROOT / "scripts" / "kill_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_killed_store_stages_recover_identically(tiny_workspace, tmp_path):
    ks = _kill_sweep()
    folder, _ = tiny_workspace
    work = tmp_path / "project"
    shutil.copytree(folder, work, symlinks=True)
    results = ks.sweep(work, ["features", "insatten", "nodes"], seed=0, echo=print)
    assert [r.stage for r in results] == ["features", "insatten", "nodes"]
    for r in results:
        assert r.rerun_ok, f"{r.stage}: dvc repro after the kill failed: {r.error}"
        assert not r.temp_files, f"{r.stage}: temporary files left after the kill and rerun: {r.temp_files}"
        assert r.outputs_identical, f"{r.stage}: outputs differ from the uninterrupted run: {r.differing_outs}"
        assert r.metrics_identical, f"{r.stage}: reports/metrics.json changed"
    assert any(r.killed for r in results), "no stage was still running at its kill moment"
