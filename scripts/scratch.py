"""A scratch copy of this repository (tracked files only) in which to run `dvc repro` without
touching the workspace: used by the benchmark and seed-spread scripts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_TIME = re.compile(r"stage (\S+) finished in ([\d.]+) s")
STARTUP = re.compile(r"stage (\S+) finished in [\d.]+ s \(start-up ([\d.]+) s\)")


def startups(out: str) -> dict[str, float]:
    """Per stage, the seconds from its process's start to its work (from `dvc repro` output)."""
    return {m.group(1): float(m.group(2)) for m in STARTUP.finditer(out)}


def env(workdir: Path | None = None) -> dict:
    """The environment of a run; with `workdir`, its own copy of `pipeline`/`stages` is imported
    (ahead of the editable install), so the workspace can change while a scratch run goes on."""
    out = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if workdir is not None:
        out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH", "")]))
    return out


def scratch_copy(prefix: str = "mango-") -> Path:
    """Copy the tracked files (as in the working tree) into a new git+DVC repository."""
    dest = Path(tempfile.mkdtemp(prefix=prefix))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=bench@example.invalid", "-c", "user.name=bench", "commit", "-qm", "scratch"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env())
    return dest


def repro(workdir: Path, *args: str) -> tuple[float, dict[str, float], str]:
    """Run `dvc repro` in `workdir`; return (wall seconds, per-stage seconds, output)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", *args], cwd=workdir, env=env(workdir), capture_output=True, text=True)
    wall = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro failed in {workdir}:\n{out[-3000:]}")
    return wall, {m.group(1): float(m.group(2)) for m in STAGE_TIME.finditer(out)}, out


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def scored_metrics(work: Path, predictions: str) -> dict[str, float]:
    """The eight metrics of a predictions file on the split the scratch copy scores as "test"
    (the validation split under dataset.score_on: val)."""
    import numpy as np
    import polars as pl

    sys.path.insert(0, str(ROOT))
    from pipeline.data.tables import load_annotated
    from pipeline.evaluation.metrics import evaluate_scores

    data = load_annotated(work / "data/prepared", work / "data/interim/metadata.parquet")
    pred = pl.read_parquet(work / predictions)
    rows = {i: r for r, i in enumerate(data.image_ids)}
    idx = np.array([rows[i] for i in pred["image_id"]])
    return evaluate_scores(pred.select(data.label_names).to_numpy(), data.targets[idx], data.label_names).metrics


def val_map(work: Path, predictions: str) -> float:
    """Mean per-label AP (mAPC) of a predictions file on the scored split (validation here)."""
    return scored_metrics(work, predictions)["mAPC"]
