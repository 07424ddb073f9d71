"""`mango nodes`: MangoNet's co-attended node features (eq. 4-9) for every image and neighbour
rank up to neighbours.k_max, once, into the node store read by every MangoNet-family trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, stage_timer


def command(
    features: Annotated[Path, typer.Option(help="Feature store written by `mango features`.")],
    attention: Annotated[Path, typer.Option(help="Attention store written by `mango insatten`.")],
    neighbours: Annotated[Path, typer.Option(help="neighbours.parquet written by `mango neighbours`.")],
    out: Annotated[Path, typer.Option(help="Node store folder to write.")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.attention import AttentionStore
    from pipeline.config import load_params
    from pipeline.io import atomic_path, read_parquet
    from pipeline.methods import neighbour_rows
    from pipeline.nodes import compute_nodes
    from pipeline.store import FeatureStore

    with stage_timer("nodes"):
        p = load_params(params)
        store, att = FeatureStore.open(features), AttentionStore.open(attention)
        if att.beta.shape[0] != store.meta["n"]:
            raise typer.BadParameter(f"{attention} holds {att.beta.shape[0]} images, {features} {store.meta['n']}; "
                                     "re-run the insatten stage")
        table = read_parquet(neighbours, {"image_id": None, "rank": None, "neighbour_id": None, "score": None})
        k = min(p.neighbours.k_max, int(table["rank"].max())) if table.height else 1  # ranks the search found
        rows, _ = neighbour_rows(table, store, max(k, 1))
        with atomic_path(out, directory=True) as tmp:
            meta = compute_nodes(store.maps, att.beta, att.y, rows, p.mangonet.coattention(), p.mangonet.coatten_pool, tmp)
        typer.echo(f"nodes: {meta['n']} images x (target + {meta['k']} neighbour ranks) x {meta['dim']} -> {out}")
