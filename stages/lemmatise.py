"""`mango lemmatise`: raw metadata -> terms per image (the input of `mango neighbours`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, stage_timer


def command(
    prepared: Annotated[Path, typer.Option(help="Folder written by `mango prepare`.")],
    out: Annotated[Path, typer.Option(help="Output folder (metadata.parquet, vocab.parquet, stats.json).")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.config import load_params
    from pipeline.datasets.base import IMAGES_SCHEMA, METADATA_RAW_SCHEMA
    from pipeline.io import atomic_path, read_parquet, write_json
    from pipeline.lemmatise import lemmatise

    with stage_timer("lemmatise"):
        p = load_params(params)
        result = lemmatise(
            read_parquet(prepared / "images.parquet", IMAGES_SCHEMA),
            read_parquet(prepared / "labels.parquet", {"image_id": None}),
            read_parquet(prepared / "metadata_raw.parquet", METADATA_RAW_SCHEMA),
            p.lemmatise.vocab_size,
        )
        with atomic_path(out, directory=True) as tmp:
            result.metadata.write_parquet(tmp / "metadata.parquet")
            result.vocab.write_parquet(tmp / "vocab.parquet")
            write_json(result.stats, tmp / "stats.json")
