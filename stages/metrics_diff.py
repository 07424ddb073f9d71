"""`mango metrics-diff`: the CI gate on reports/metrics.json against a git revision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption


def command(
    rev: Annotated[str, typer.Option(help="Git revision to compare with.")] = "HEAD",
    metrics: Annotated[Path, typer.Option(help="The DVC metrics file.")] = Path("reports/metrics.json"),
    tolerance: Annotated[float | None, typer.Option(help="Allowed drop (default: gate.tolerance in params).")] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.config import load_params
    from pipeline.errors import MangoError
    from pipeline.gate import compare, dvc_metrics_diff, markdown

    gate = load_params(params).gate
    tol = gate.tolerance if tolerance is None else tolerance
    if tol < 0:
        raise MangoError(f"--tolerance must be >= 0, got {tol}")
    if not metrics.exists():
        raise MangoError(f"{metrics}: not found; run `dvc repro` first")
    rows = compare(dvc_metrics_diff(rev, [str(metrics)]), tuple(gate.metrics))
    typer.echo(markdown(rows, rev, tol))
    failed = [r for r in rows if r.fails(tol)]
    if failed:
        typer.echo(f"\nmetric gate FAILED: {len(failed)} drop(s) larger than {tol} against {rev}", err=True)
        raise typer.Exit(1)
    typer.echo(f"\nmetric gate passed: no {'/'.join(gate.metrics)} drop larger than {tol} against {rev}")
