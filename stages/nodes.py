"""`mango nodes`: MangoNet's co-attended node features (eq. 4-9) for every image and neighbour
rank up to neighbours.k_max, once, into the node store read by every MangoNet-family trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import AttentionOption, FeaturesOption, NeighboursOption, ParamsOption, stage_timer


def command(
    features: FeaturesOption,
    attention: AttentionOption,
    neighbours: NeighboursOption,
    out: Annotated[Path, typer.Option(help="Node store folder to write.")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline.features.store import AttentionStore
    from pipeline.config import load_params
    from pipeline.io import atomic_path, read_parquet
    from pipeline.methods import neighbour_rows
    from pipeline.features.nodes import compute_nodes
    from pipeline.features.store import FeatureStore

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
