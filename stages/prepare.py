"""`mango prepare`: read the configured dataset through its adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, stage_timer


def command(
    out: Annotated[Path, typer.Option(help="Output folder (images.parquet, labels.parquet, metadata_raw.parquet, stats.json).")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.config import load_params
    from pipeline.data.prepare import prepare, write_prepared

    with stage_timer("prepare"):
        p = load_params(params)
        prep, stats = prepare(p.dataset)
        write_prepared(prep, stats, out)
