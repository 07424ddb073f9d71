"""The CI metric gate: compare the workspace's metrics with a git revision (via `dvc metrics diff`).

`dvc metrics diff` always exits 0, so the decision is made here: a method whose gated metric
(mAPC, OF1 by default) drops by more than its tolerance, or that disappears, fails the gate.

The tolerance of a (method, metric) is derived from the noise measured for it: max(floor,
sigmas x the standard deviation of that metric over training seeds, `make seeds`), so an
unrelated change does not fail CI on seed noise, while a drop beyond it is a regression. The
spread is read at the compared revision, so a change cannot widen its own gate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import MangoError


@dataclass
class Row:
    method: str
    metric: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    tolerance: float | None = None  # this row's allowed drop (set by `tolerances`)

    def fails(self, tolerance: float | None = None) -> bool:
        tolerance = self.tolerance if tolerance is None else tolerance
        if tolerance is None:
            raise ValueError(f"{self.method}.{self.metric}: no tolerance")
        if self.old is None:
            return False  # a new method or metric: nothing to regress from
        if self.new is None:
            return True  # the method's row vanished
        return self.new < self.old - tolerance


def dvc_metrics_diff(rev: str, targets: list[str]) -> dict:
    """`dvc metrics diff --json --all <rev>` for `targets` (file -> "Method.metric" -> old/new)."""
    cmd = [sys.executable, "-m", "dvc", "metrics", "diff", "--json", "--all", rev, "--targets", *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MangoError(f"`dvc metrics diff {rev}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError as exc:
        raise MangoError(f"`dvc metrics diff` printed no JSON: {proc.stdout[:200]!r}") from exc


def compare(diff: dict, metrics: tuple[str, ...]) -> list[Row]:
    """Rows (method, metric, old, new) for the gated metrics, from dvc's diff JSON."""
    rows = []
    for per_file in diff.values():
        for key, change in per_file.items():
            method, _, metric = key.rpartition(".")
            if metric in metrics:
                rows.append(Row(method, metric, change.get("old"), change.get("new")))
    return sorted(rows, key=lambda r: (r.method, metrics.index(r.metric)))


def seed_std(spread_path: Path, text: str | None = None) -> dict[tuple[str, str], float]:
    """(method title, metric) -> standard deviation over seeds, from `make seeds`' JSON (its
    `text`, or the file)."""
    try:
        data = json.loads(spread_path.read_text() if text is None else text)
        return {(method, metric): float(v["std"]) for method, per in data["spread"].items() for metric, v in per.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MangoError(f"{spread_path}: not a seed-spread file of `make seeds` ({exc}); "
                         f"set gate.spread: '' to gate on the floor gate.tolerance alone") from None


def file_at(rev: str, path: str) -> str | None:
    """The text of `path` at git revision `rev`, or None when it is not there."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def tolerances(rows: list[Row], floor: float, sigmas: float, std: dict[tuple[str, str], float]) -> list[Row]:
    """Set each row's allowed drop: max(floor, sigmas x its seed std); the floor where none was measured."""
    for r in rows:
        r.tolerance = max(floor, sigmas * std.get((r.method, r.metric), 0.0))
    return rows


def markdown(rows: list[Row], rev: str) -> str:
    def fmt(x: float | None, sign: bool = False) -> str:
        return "-" if x is None else (f"{x:+.4f}" if sign else f"{x:.4f}")

    lines = [f"| method | metric | {rev} | workspace | change | allowed drop | |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        verdict = "**FAIL**" if r.fails() else "ok"
        lines.append(f"| {r.method} | {r.metric} | {fmt(r.old)} | {fmt(r.new)} | {fmt(r.delta, True)} | "
                     f"{r.tolerance:.4f} | {verdict} |")
    return "\n".join(lines)
