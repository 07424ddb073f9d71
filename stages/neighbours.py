"""`mango neighbours`: top-k metadata neighbours of every image within its split.

Default: exact Jaccard on the terms of metadata.parquet. `--partition groups`: the paper's
hierarchy search (exact Jaccard among the images sharing a group, pipeline/neighbours/hierarchy.py).
`--method semantic --raw metadata_raw.parquet`: the paper's semantic search on captions (weighted
word2vec attribute vectors + FAISS, pipeline/neighbours/semantic.py).
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
    device_name: Annotated[str, typer.Option("--device", help="semantic: auto | cpu | cuda (a FAISS GPU index on CUDA).")] = "auto",
) -> None:
    from pipeline.config import NeighboursParams
    from pipeline.errors import MangoError
    from pipeline.io import read_parquet, write_parquet
    from pipeline.neighbours import search
    from pipeline.schemas import METADATA_RAW_SCHEMA, METADATA_SCHEMA

    if method not in ("jaccard", "semantic"):
        raise MangoError(f"--method must be jaccard or semantic, got '{method}'")
    partition = partition or "none"
    if method == "semantic":
        from pipeline.neighbours.semantic import word2vec_path

        if partition != "none":
            raise MangoError(f"--partition {partition} applies to --method jaccard only; use --partition none")
        if raw is None:
            raise MangoError("--method semantic needs --raw, the metadata_raw.parquet written by `mango prepare`")
        if word2vec:
            word2vec_path(word2vec)  # a missing file fails before the tokenising
    params = NeighboursParams(k_max=k, block_size=block_size, method=method, partition=partition,
                              attributes=attributes, word2vec=word2vec)
    with stage_timer("neighbours"):
        metadata = read_parquet(input, METADATA_SCHEMA)
        raw_table = read_parquet(raw, METADATA_RAW_SCHEMA) if method == "semantic" else None
        device = None
        if method == "semantic":
            from pipeline.device import resolve_device

            device = resolve_device(device_name)
        result = search(metadata, params, raw=raw_table, device=device, source=str(input), raw_source=str(raw))
        write_parquet(result, output)
