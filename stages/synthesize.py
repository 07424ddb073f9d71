"""`mango synthesize`: write the embedded default world in the MIRFlickr-25k layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, log, stage_timer


def command(
    out: Annotated[Path, typer.Option(help="Output folder: a MIRFlickr-25k tree (mirflickr/, mirflickr25k_annotations_v080/).")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.config import load_params
    from pipeline.io import atomic_path
    from pipeline.data.synthetic.write import generate

    with stage_timer("synthesize"):
        p = load_params(params).synthetic
        with atomic_path(out, directory=True) as tmp:
            counts = generate(tmp, p)
        log.info("synthesize: images per label: %s", ", ".join(f"{k} {v}" for k, v in counts["per_label"].items()))
