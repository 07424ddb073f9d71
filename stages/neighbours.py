"""`mango neighbours`: top-k metadata neighbours of every image within its split.

Default: exact Jaccard on the terms of metadata.parquet. `--partition groups`: the paper's
hierarchy search (exact Jaccard among the images sharing a group, pipeline/hierarchy.py).
`--method semantic --raw metadata_raw.parquet`: the paper's semantic search on captions (weighted
word2vec attribute vectors + FAISS, pipeline/semantic.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import stage_timer


def command(
    input: Annotated[Path, typer.Argument(metavar="IN", help="Parquet with image_id (string), split (string), terms (list of strings).")],
    output: Annotated[Path, typer.Argument(metavar="OUT", help="Parquet to write: image_id, rank (1-based), neighbour_id, score.")],
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours kept per image (fewer when fewer images share a term).")] = 15,
    block_size: Annotated[int, typer.Option("--block-size", min=1, help="Query rows per block (bounds memory).")] = 2048,
    method: Annotated[str, typer.Option("--method", help="jaccard (terms) | semantic (captions: word2vec attribute vectors, cosine).")] = "jaccard",
    partition: Annotated[str, typer.Option("--partition", help="jaccard: none, or a list column of IN (e.g. groups): search "
                                           "only among images sharing a group (images in no group: the whole split).")] = "none",
    raw: Annotated[Path | None, typer.Option("--raw", help="semantic: metadata_raw.parquet of `mango prepare` (its 'caption' rows).")] = None,
    attributes: Annotated[int, typer.Option("--attributes", min=1, help="semantic: most common visual attributes kept.")] = 256,
    word2vec: Annotated[str, typer.Option("--word2vec", help="semantic: pretrained word2vec file (binary or text); "
                                          "empty = train word2vec on the captions.")] = "",
) -> None:
    from pipeline.errors import MangoError
    from pipeline.io import read_parquet, write_parquet
    from pipeline.lemmatise import METADATA_SCHEMA

    if method not in ("jaccard", "semantic"):
        raise MangoError(f"--method must be jaccard or semantic, got '{method}'")
    with stage_timer("neighbours"):
        metadata = read_parquet(input, METADATA_SCHEMA)
        if method == "semantic":
            from pipeline.datasets.base import METADATA_RAW_SCHEMA
            from pipeline.semantic import search_semantic

            if partition not in ("none", ""):
                raise MangoError(f"--partition {partition} applies to --method jaccard only; use --partition none")
            if raw is None:
                raise MangoError("--method semantic needs --raw, the metadata_raw.parquet written by `mango prepare`")
            result = search_semantic(metadata, read_parquet(raw, METADATA_RAW_SCHEMA), k, attributes=attributes,
                                     word2vec=word2vec or None, block_size=block_size, source=str(input), raw_source=str(raw))
        elif partition not in ("none", ""):
            from pipeline.hierarchy import search_neighbours_partitioned

            result = search_neighbours_partitioned(metadata, k, block_size, partition=partition, source=str(input))
        else:
            from pipeline.neighbours import search_neighbours

            result = search_neighbours(metadata, k, block_size, source=str(input))
        write_parquet(result, output)
