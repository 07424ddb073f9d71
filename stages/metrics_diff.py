"""`mango metrics-diff`: the CI gate on reports/metrics.json against a git revision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption


def command(
    rev: Annotated[str, typer.Option(help="Git revision to compare with.")] = "HEAD",
    metrics: Annotated[Path, typer.Option(help="The DVC metrics file.")] = Path("reports/metrics.json"),
    tolerance: Annotated[float | None, typer.Option(help="One allowed drop for every metric, instead of the "
                                                         "seed-derived ones of the gate section in params.")] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.config import load_params
    from pipeline.errors import MangoError
    from pipeline.evaluation.gate import compare, dvc_metrics_diff, file_at, markdown, seed_std, tolerances

    gate = load_params(params).gate
    if tolerance is not None and tolerance < 0:
        raise MangoError(f"--tolerance must be >= 0, got {tolerance}")
    if not metrics.exists():
        raise MangoError(f"{metrics}: not found; run `dvc repro` first")
    spread = file_at(rev, gate.spread) if tolerance is None and gate.spread else None
    if tolerance is not None:
        floor, sigmas, std, rule = tolerance, 0.0, {}, f"{tolerance} (--tolerance)"
    elif spread is not None:  # the spread as committed at `rev`: a change cannot widen its own gate
        floor, sigmas, std = gate.tolerance, gate.sigmas, seed_std(Path(gate.spread), spread)
        rule = f"max({gate.tolerance}, {gate.sigmas:g} x seed std of {gate.spread} at {rev})"
    else:
        if gate.spread:
            typer.echo(f"gate: {gate.spread} is not in {rev} (make seeds writes it); every allowed drop is "
                       f"gate.tolerance", err=True)
        floor, sigmas, std, rule = gate.tolerance, 0.0, {}, f"{gate.tolerance} (gate.tolerance)"
    rows = tolerances(compare(dvc_metrics_diff(rev, [str(metrics)]), tuple(gate.metrics)), floor, sigmas, std)
    typer.echo(markdown(rows, rev))
    failed = [r for r in rows if r.fails()]
    if failed:
        typer.echo(f"\nmetric gate FAILED: {len(failed)} drop(s) larger than allowed ({rule}) against {rev}", err=True)
        raise typer.Exit(1)
    typer.echo(f"\nmetric gate passed: no {'/'.join(gate.metrics)} drop larger than allowed ({rule}) against {rev}")
