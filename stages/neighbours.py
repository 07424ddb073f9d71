"""`mango neighbours`: terms per image -> exact top-k Jaccard neighbours within each split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import stage_timer


def command(
    input: Annotated[Path, typer.Argument(metavar="IN", help="Parquet with image_id (string), split (string), terms (list of strings).")],
    output: Annotated[Path, typer.Argument(metavar="OUT", help="Parquet to write: image_id, rank (1-based), neighbour_id, score.")],
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours kept per image (fewer when fewer images share a term).")] = 15,
    block_size: Annotated[int, typer.Option("--block-size", min=1, help="Query rows per sparse-product block (bounds memory).")] = 2048,
) -> None:
    from pipeline.io import read_parquet, write_parquet
    from pipeline.lemmatise import METADATA_SCHEMA
    from pipeline.neighbours import search_neighbours

    with stage_timer("neighbours"):
        metadata = read_parquet(input, METADATA_SCHEMA)
        write_parquet(search_neighbours(metadata, k, block_size, source=str(input)), output)
