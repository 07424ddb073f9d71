"""`mango lemmatise`: raw metadata -> terms per image (the input of `mango neighbours`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, PreparedOption, stage_timer


def command(
    prepared: PreparedOption,
    out: Annotated[Path, typer.Option(help="Output folder (metadata.parquet, vocab.parquet, stats.json).")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.config import load_params
    from pipeline.schemas import (IMAGES_FILE, IMAGES_SCHEMA, LABELS_FILE, METADATA_FILE, METADATA_RAW_FILE,
                                  METADATA_RAW_SCHEMA, VOCAB_FILE)
    from pipeline.io import atomic_path, read_parquet, write_json
    from pipeline.text.lemmatise import lemmatise

    with stage_timer("lemmatise"):
        p = load_params(params)
        result = lemmatise(
            read_parquet(prepared / IMAGES_FILE, IMAGES_SCHEMA),
            read_parquet(prepared / LABELS_FILE, {"image_id": None}),
            read_parquet(prepared / METADATA_RAW_FILE, METADATA_RAW_SCHEMA),
            p.lemmatise.vocab_size,
        )
        with atomic_path(out, directory=True) as tmp:
            result.metadata.write_parquet(tmp / METADATA_FILE)
            result.vocab.write_parquet(tmp / VOCAB_FILE)
            write_json(result.stats, tmp / "stats.json")
