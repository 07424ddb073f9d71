"""Metadata neighbours (`mango neighbours`): exact Jaccard on terms (`jaccard`, with the pruned
`kernel` for large collections), the paper's hierarchy search (`hierarchy`) and semantic search on
captions (`semantic`), plus exact cosine search with FAISS (`cosine`) that the visual baselines
share. `common` holds the pieces they share. May import the top-level modules and `pipeline.text`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl
    import torch

    from pipeline.config import NeighboursParams


def search(metadata: pl.DataFrame, params: NeighboursParams, *, raw: pl.DataFrame | None = None,
           device: torch.device | None = None, source: str = "metadata", raw_source: str = "metadata_raw") -> pl.DataFrame:
    """The top-`params.k_max` neighbours of every image of `metadata` within its split, by the
    search `params` names: exact Jaccard on terms (method jaccard, partition none), hierarchy
    search within the `params.partition` groups, or semantic search on the captions of `raw`
    (method semantic). Returns NEIGHBOURS_SCHEMA rows in input order, then rank (1-based)."""
    from pipeline.errors import MangoError

    if params.method == "semantic":
        from pipeline.neighbours.semantic import search_semantic

        if raw is None:
            raise MangoError("semantic search needs the raw metadata (metadata_raw.parquet, its caption rows)")
        return search_semantic(metadata, raw, params.k_max, attributes=params.attributes, word2vec=params.word2vec or None,
                               block_size=params.block_size, source=source, raw_source=raw_source, device=device)
    if params.partition != "none":
        from pipeline.neighbours.hierarchy import search_neighbours_partitioned

        return search_neighbours_partitioned(metadata, params.k_max, params.block_size, partition=params.partition,
                                             source=source)
    from pipeline.neighbours.jaccard import search_neighbours

    return search_neighbours(metadata, params.k_max, params.block_size, source=source)
