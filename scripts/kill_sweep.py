"""Kill sweep: SIGKILL each DVC stage at a random moment, rerun `dvc repro`, check the damage.

For every stage of dvc.yaml (matrix stages by their `dvc stage list` names, e.g. `train@mangonet`)
or those of `--stages`, in a copy of a trained workspace:

1. force the stage once uninterrupted (`dvc repro -f -s STAGE`) and time it;
2. force it again and SIGKILL its whole process group at a moment drawn uniformly (seeded) within
   that measured duration;
3. repair what the kill left in DVC's own state files (`scripts/repair_dvc_state.py`, as
   `make repro` does: an rwlock or dvc.lock cut off mid-write), run a plain `dvc repro` and
   check that it completes, that the stage's outputs (their `md5` in
   dvc.lock) equal those of the uninterrupted run, that reports/metrics.json is unchanged, and
   that no temporary file (`*.tmp-*`, `.part-*`; not under .dvc/ or .git/) is left.

An output whose md5 already changes between the trained workspace and the uninterrupted forced run
is nondeterministic across runs by itself (not because of the kill); it is left out of the
comparison and named in the output, and the metrics comparison stands for it.

    python scripts/kill_sweep.py                      # a fresh tiny workspace (tests/test_e2e.py)
    python scripts/kill_sweep.py --workspace DIR      # a copy of an existing trained workspace
    python scripts/kill_sweep.py --stages features,nodes --seed 1 --out reports/kill_sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repair_dvc_state  # noqa: E402  (scripts/, beside this file)

ROOT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]
METRICS = "reports/metrics.json"
TEMP_PATTERNS = ("*.tmp-*", ".part-*")


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                DVC_NO_ANALYTICS="1")


def dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*DVC, *args], cwd=cwd, env=_env(), capture_output=True, text=True)


def stage_names(work: Path) -> list[str]:
    proc = dvc(["stage", "list", "--name-only"], work)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc stage list failed:\n{proc.stdout}{proc.stderr}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def lock_outs(work: Path, stage: str) -> dict[str, str | None]:
    """{out path: md5} of `stage` in dvc.lock (empty when the stage is not locked)."""
    lock = yaml.safe_load((work / "dvc.lock").read_text()) or {}
    entry = lock.get("stages", {}).get(stage, {})
    return {o["path"]: o.get("md5") for o in entry.get("outs", [])}


def read_metrics(work: Path):
    path = work / METRICS
    return json.loads(path.read_text()) if path.exists() else None


def temp_files(work: Path) -> list[str]:
    """Leftover temporary paths under `work` (not .dvc/ nor .git/), relative to it."""
    proc = subprocess.run(
        ["find", ".", "(", "-path", "./.dvc", "-o", "-path", "./.git", ")", "-prune", "-o",
         "(", "-name", TEMP_PATTERNS[0], "-o", "-name", TEMP_PATTERNS[1], ")", "-print"],
        cwd=work, capture_output=True, text=True, check=True)
    return sorted(line[2:] for line in proc.stdout.splitlines() if line.strip())


@dataclass
class StageResult:
    stage: str
    duration_s: float = 0.0
    killed_at_s: float = 0.0
    killed: bool = False              # False: the forced run finished before the kill moment
    rerun_ok: bool = False
    outputs_identical: bool = False
    metrics_identical: bool = True
    nondeterministic_outs: list[str] = field(default_factory=list)
    differing_outs: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    dvc_repairs: list[str] = field(default_factory=list)  # DVC state files the kill left unreadable
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.rerun_ok and self.outputs_identical and self.metrics_identical and not self.temp_files

    def line(self) -> str:
        if self.error and not self.duration_s:
            return f"stage {self.stage}: FAILED before the kill: {self.error}"
        kill = (f"killed at {self.killed_at_s:.1f} s of {self.duration_s:.1f} s" if self.killed
                else f"finished before the kill at {self.killed_at_s:.1f} s of {self.duration_s:.1f} s")
        rerun = "rerun ok" if self.rerun_ok else f"rerun FAILED ({self.error})"
        if not self.rerun_ok:
            same = "outputs not compared"
        elif self.outputs_identical and self.metrics_identical:
            same = "outputs identical"
            if self.nondeterministic_outs:
                same += (f" (except {', '.join(self.nondeterministic_outs)}: nondeterministic across "
                         f"uninterrupted runs too; metrics identical)")
        else:
            parts = [f"outputs DIFFER: {', '.join(self.differing_outs)}"] if self.differing_outs else []
            parts += [] if self.metrics_identical else [f"{METRICS} DIFFERS"]
            same = "; ".join(parts)
        temps = ("no temporary files" if not self.temp_files
                 else f"{len(self.temp_files)} TEMPORARY FILES LEFT: {', '.join(self.temp_files[:5])}"
                 + (" ..." if len(self.temp_files) > 5 else ""))
        repaired = f", DVC state repaired first: {'; '.join(self.dvc_repairs)}" if self.dvc_repairs else ""
        return f"stage {self.stage}: {kill}{repaired}, {rerun}, {same}, {temps}"


def sweep_stage(work: Path, stage: str, rng: random.Random, timeout: float = 1800) -> StageResult:
    """Measure, kill and rerun one stage in the workspace `work` (changed in place)."""
    res = StageResult(stage)
    before_outs, before_metrics = lock_outs(work, stage), read_metrics(work)

    t0 = time.monotonic()
    proc = dvc(["repro", "-f", "-s", stage], work)
    res.duration_s = time.monotonic() - t0
    if proc.returncode != 0:
        res.error = f"uninterrupted forced run failed: {(proc.stdout + proc.stderr)[-600:]}"
        res.duration_s = 0.0
        return res
    reference = lock_outs(work, stage)
    res.nondeterministic_outs = sorted(p for p, md5 in reference.items() if before_outs.get(p) != md5)
    if res.nondeterministic_outs:
        # Downstream stages are now stale; bring the workspace back to a consistent state first, so
        # that the metrics compared below are those of the uninterrupted run.
        proc = dvc(["repro"], work)
        if proc.returncode != 0:
            res.error = f"repro after the uninterrupted run failed: {(proc.stdout + proc.stderr)[-600:]}"
            res.duration_s = 0.0
            return res
        before_metrics = read_metrics(work)

    res.killed_at_s = rng.uniform(0.0, res.duration_s)
    child = subprocess.Popen([*DVC, "repro", "-f", "-s", stage], cwd=work, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        child.wait(timeout=res.killed_at_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        res.killed = True
    child.wait()
    try:  # every process of the group, not only dvc itself
        os.killpg(child.pid, 0)
        time.sleep(0.5)
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

    _, res.dvc_repairs = repair_dvc_state.repair(work, echo=lambda _: None)
    proc = subprocess.run([*DVC, "repro"], cwd=work, env=_env(), capture_output=True, text=True, timeout=timeout)
    res.rerun_ok = proc.returncode == 0
    if not res.rerun_ok:
        res.error = (proc.stdout + proc.stderr)[-600:].replace("\n", " ")
    after = lock_outs(work, stage)
    res.differing_outs = sorted(p for p, md5 in reference.items()
                                if p not in res.nondeterministic_outs and after.get(p) != md5)
    res.outputs_identical = res.rerun_ok and not res.differing_outs and set(after) == set(reference)
    res.metrics_identical = read_metrics(work) == before_metrics
    res.temp_files = temp_files(work)
    return res


def sweep(work: Path, stages: list[str] | None = None, seed: int = 0, echo=print) -> list[StageResult]:
    """Sweep `stages` (default: every stage of dvc.yaml) in the trained workspace `work`, in place."""
    rng = random.Random(seed)
    stages = stages or stage_names(work)
    leftovers = temp_files(work)
    if leftovers:
        raise RuntimeError(f"the workspace has temporary files before any kill: {leftovers}")
    results = []
    for stage in stages:
        res = sweep_stage(work, stage, rng)
        echo(res.line())
        if res.temp_files:  # judge each stage on its own leftovers
            for rel in res.temp_files:
                p = work / rel
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        results.append(res)
    return results


def summary(results: list[StageResult]) -> str:
    ok = sum(r.ok for r in results)
    killed = sum(r.killed for r in results)
    repaired = [r.stage for r in results if r.dvc_repairs]
    bad = [r.stage for r in results if not r.ok]
    return (f"{len(results)} stages tried, {killed} killed mid-run, {ok} survived every check"
            + (f" ({len(repaired)} after repairing DVC's state files: {', '.join(repaired)})" if repaired else "")
            + (f"; FAILED: {', '.join(bad)}" if bad else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, help="a trained workspace to copy (default: build a tiny one)")
    ap.add_argument("--stages", help="comma-separated stage names (default: every stage)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "kill_sweep.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="kill_sweep-"))
    work = tmp / "project"
    try:
        if args.workspace:
            shutil.copytree(args.workspace, work, symlinks=True)
        else:
            sys.path.insert(0, str(ROOT))
            from tests.test_e2e import build_tiny_workspace

            print(f"building a tiny workspace in {work} ...", flush=True)
            build_tiny_workspace(work)
        stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
        t0 = time.monotonic()
        results = sweep(work, stages, args.seed, echo=lambda s: print(s, flush=True))
        line = summary(results)
        print(line)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "seed": args.seed, "summary": line, "elapsed_s": round(time.monotonic() - t0, 1),
            "stages": [{**asdict(r), "ok": r.ok} for r in results]}, indent=2) + "\n")
        return 0 if all(r.ok for r in results) else 1
    finally:
        if args.keep:
            print(f"workspace kept in {work}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
