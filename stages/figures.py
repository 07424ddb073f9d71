"""`mango figures`: the paper's Fig. 5 (per-label AP scatter) and Fig. 6 (co-attention maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import AttentionOption, FeaturesOption, MetadataOption, NeighboursOption, ParamsOption, PreparedOption, stage_timer


def command(
    details: Annotated[Path, typer.Option(help="reports/evaluation.json written by `mango report`.")],
    features: FeaturesOption,
    attention: AttentionOption,
    neighbours: NeighboursOption,
    prepared: PreparedOption,
    metadata: MetadataOption,
    checkpoint: Annotated[Path, typer.Option(help="MangoNet checkpoint.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG figures.")],
    baseline: Annotated[str, typer.Option(help="Method on the x axis of Fig. 5 (the paper: NCNN).")] = "NCNN",
    examples: Annotated[int, typer.Option(help="Test images shown in Fig. 6.")] = 4,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    import numpy as np

    from pipeline.config import load_params
    from pipeline.errors import MangoError
    from pipeline.evaluation.figures import ap_scatter, coattention_grid, coattention_maps
    from pipeline.io import atomic_path, read_json
    from pipeline.methods import model_inputs
    from pipeline.training.loop import predict
    from stages.common import trained_mangonet

    with stage_timer("figures"):
        p = load_params(params)
        methods = read_json(details)["methods"]
        for name in ("MangoNet", baseline):
            if name not in methods:
                raise MangoError(f"{details}: no method '{name}' (have: {', '.join(k for k in methods if not k.startswith('_'))})")
        ctx, model, ckpt, data = trained_mangonet(features, attention, neighbours, prepared, metadata, checkpoint, p)
        store, targets, nb = ctx.store, ctx.targets, ctx.neighbours
        pool = int(ckpt["config"]["coatten_pool"])
        test = ctx.rows("test")
        scores = predict(model, [model_inputs("mangonet", ctx, test, ckpt["config"])], ctx.device)
        # the images where the neighbourhood helped most: gain on the true labels over Multi-CNN
        gain = ((scores - store.scores[test]) * targets[test]).sum(axis=1)
        chosen = test[np.argsort(-gain, kind="stable")[:examples]]
        inputs = model_inputs("mangonet", ctx, chosen, ckpt["config"])
        h = -(-store.meta["height"] // pool)
        w = -(-store.meta["width"] // pool)
        alphas = coattention_maps(model, inputs, h, w)
        nodes = np.concatenate([chosen[:, None], nb[chosen]], axis=1)
        mask = nodes >= 0
        paths = [[data.paths[j] if j >= 0 else "" for j in row] for row in nodes]
        names = data.label_names
        captions = [[f"{data.image_ids[j]}: " + ", ".join(names[k] for k in np.flatnonzero(targets[j])[:2]) if j >= 0 else ""
                     for j in row] for row in nodes]
        with atomic_path(out, directory=True) as tmp:
            ap_scatter(methods[baseline]["per_label_ap"], methods["MangoNet"]["per_label_ap"], baseline, "MangoNet",
                       "Per-label AP (Fig. 5)", tmp / f"fig5_ap_mangonet_vs_{baseline.lower().replace(' ', '_').replace('-', '')}.png")
            coattention_grid(paths, alphas, mask, captions, tmp / "fig6_coattention.png")
