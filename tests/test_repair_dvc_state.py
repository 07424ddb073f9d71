"""scripts/repair_dvc_state.py: DVC state files cut off by a kill are repaired, and only those."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("repair_dvc_state", ROOT / "scripts" / "repair_dvc_state.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path):
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    return tmp_path


VALID_RWLOCK = json.dumps({"read": {}, "write": {"data/x": {"pid": 1, "cmd": "dvc repro"}}})


@pytest.mark.parametrize("text", ["", "  \n", VALID_RWLOCK[:17], '{"read": {}, "write": {"data/x": {"pid"', "[1, 2]",
                                  '{"other": 1}'])
def test_an_unreadable_rwlock_is_removed(repo, text):
    rw = repo / ".dvc" / "tmp" / "rwlock"
    rw.write_text(text)
    usable, repairs = _module().repair(repo, echo=lambda _: None)
    assert usable and not rw.exists()
    assert len(repairs) == 1 and "rwlock" in repairs[0]


def test_well_formed_state_is_left_alone(repo):
    rw = repo / ".dvc" / "tmp" / "rwlock"
    rw.write_text(VALID_RWLOCK)
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages:\n  prepare:\n    cmd: mango prepare\n    deps:\n"
                                   "    - path: data/raw\n      hash: md5\n      md5: 0cc175b9c0f1b6a831c399e269772661.dir\n")
    assert _module().repair(repo, echo=lambda _: None) == (True, [])
    assert rw.read_text() == VALID_RWLOCK
    assert sorted(p.name for p in repo.iterdir()) == [".dvc", "dvc.lock"]


def test_nothing_to_repair_without_the_files(repo):
    assert _module().repair(repo, echo=lambda _: None) == (True, [])


@pytest.mark.parametrize("text", [
    "",  # emptied by DVC's write, killed before any byte of it
    "schema: '2.0'\nstages:\n  prepare:\n    cmd: mango prepare\n    deps:\n    - path: \"data/raw\n",  # not YAML
    "schema: '2.0'\nstages:\n  synthesize:\n    cmd: mango synthesize\n  prepare:\n    deps:\n    - path: data/raw\n",
])  # the second parses, but its last stage was cut off before its cmd: DVC's schema refuses it
def test_a_cut_off_dvc_lock_is_moved_aside(repo, text):
    (repo / "dvc.lock").write_text(text)
    lines = []
    usable, repairs = _module().repair(repo, echo=lines.append)
    assert usable and not (repo / "dvc.lock").exists()
    (aside,) = repo.glob("dvc.lock.corrupt-*")
    assert aside.read_text() == text
    assert len(repairs) == 1 and "run-cache" in repairs[0] and lines == [f"DVC state: {repairs[0]}"]


def test_nothing_is_touched_while_dvc_runs_there(repo, tmp_path_factory):
    fake = tmp_path_factory.mktemp("bin") / "dvc"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    rw = repo / ".dvc" / "tmp" / "rwlock"
    rw.write_text("")
    proc = subprocess.Popen([str(fake), "repro"], cwd=repo)
    try:
        deadline = time.monotonic() + 5
        module = _module()
        while not module.running_dvc(repo) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = []
        assert module.repair(repo, echo=lines.append) == (False, [])
        assert rw.exists() and "DVC is running" in lines[0] and str(proc.pid) in lines[0]
    finally:
        proc.kill()
        proc.wait()
    assert _module().repair(repo, echo=lambda _: None)[0] and not rw.exists()


def test_the_command_line_names_a_folder_that_is_not_a_repository(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "repair_dvc_state.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not a DVC repository" in proc.stderr


@pytest.mark.slow
def test_dvc_runs_again_after_the_repair(tiny_workspace, tmp_path):
    """Real DVC refuses an empty rwlock and a dvc.lock cut off mid-stage; after the repair `dvc repro`
    completes (the stages restored from the run-cache) with the same metrics."""
    folder, _ = tiny_workspace
    work = tmp_path / "project"
    shutil.copytree(folder, work, symlinks=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    metrics = (work / "reports" / "metrics.json").read_text()
    lock = (work / "dvc.lock").read_text()
    (work / ".dvc" / "tmp" / "rwlock").write_text("")
    headers = [i for i, line in enumerate(lock.splitlines()) if line.startswith("  ") and not line.startswith("   ")]
    # cut off just after the third stage's name: still YAML, but a stage without its cmd
    (work / "dvc.lock").write_text("\n".join(lock.splitlines()[: headers[2] + 1]) + "\n")
    broken = subprocess.run([*dvc, "repro"], cwd=work, env=env, capture_output=True, text=True)
    assert broken.returncode != 0
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "repair_dvc_state.py"), str(work)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.count("DVC state:") == 2, proc.stdout + proc.stderr
    rerun = subprocess.run([*dvc, "repro"], cwd=work, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert (work / "reports" / "metrics.json").read_text() == metrics
