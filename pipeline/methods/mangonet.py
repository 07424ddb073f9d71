"""Training and prediction for MangoNet (eq. 4-11) on cached features, attention and neighbours."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from pipeline.batching import gather_maps, index_batches, n_batches
from pipeline.methods import Context, Method, register
from pipeline.models.mangonet import MangoNet
from pipeline.train import fit, predict

log = logging.getLogger(__name__)


def graph_batch(ctx: Context, idx: np.ndarray, m: int, pool: int) -> tuple[torch.Tensor, ...]:
    """Inputs of MangoNet for target rows `idx`: phi (B, N, D, P), beta (B, N, C, P), y (B, N, C), mask (B, N)."""
    nodes = np.concatenate([idx[:, None], ctx.neighbours[idx, :m]], axis=1)  # (B, N) node 0 = target
    mask = nodes >= 0
    safe = np.where(mask, nodes, idx[:, None])  # padded nodes read the target's row, then get masked
    phi = gather_maps(ctx.store.maps, safe, pool, "avg")  # (B, N, D, P)
    beta = gather_maps(ctx.attention.beta, safe, pool, "max")  # (B, N, C, P)
    y = torch.from_numpy(ctx.attention.y[safe])  # (B, N, C)
    return phi, beta, y, torch.from_numpy(mask)


def build(ctx: Context, nodes: str = "coatten", global_feature: bool = True) -> MangoNet:
    p = ctx.params.mangonet
    return MangoNet(ctx.store.meta["dim"], len(ctx.store.labels), p.hidden, nodes, global_feature, p.target_weights)


def train_graph_model(ctx: Context, model: MangoNet, name: str) -> tuple[MangoNet, np.ndarray, dict]:
    """Fit a MangoNet-family model on training rows (train neighbours); score the test rows."""
    p, m, seed = ctx.params.mangonet, ctx.m, ctx.params.seed
    train_rows, test_rows = ctx.rows("train"), ctx.rows("test")

    def batches(epoch: int):
        for idx in index_batches(train_rows, p.batch_size, shuffle=True, seed=seed, epoch=epoch, shard=True):
            yield graph_batch(ctx, idx, m, p.coatten_pool), torch.from_numpy(ctx.targets[idx].astype(np.float32))

    history = fit(model, batches, n_batches(len(train_rows), p.batch_size, shard=True), p, ctx.device, name, ctx.live_dir)
    test_batches = (graph_batch(ctx, idx, m, p.coatten_pool) for idx in index_batches(test_rows, 256, shuffle=False))
    scores = predict(model, test_batches, ctx.device, n_batches(len(test_rows), 256), desc=f"{name}: predict")
    config = {"method": name, "m": m, **dataclasses.asdict(p), "nodes": model.nodes, "global_feature": model.global_feature}
    return model, scores, {"config": config, "history": history}


def graph_method(name: str, nodes: str = "coatten", global_feature: bool = True):
    """A trainer for one member of the MangoNet family (the model, or an ablation of it)."""

    def train(ctx: Context):
        torch.manual_seed(ctx.params.seed)
        return train_graph_model(ctx, build(ctx, nodes, global_feature), name)

    return train


register(Method("mangonet", "MangoNet", stage="train", uses_neighbours=True, uses_attention=True,
                train=graph_method("mangonet")))
# Ablations of section 4.4: holistic (average-pooled) node features; no global-feature concatenation.
register(Method("ngcn", "NGCN", stage="train", uses_neighbours=True, uses_attention=True,
                train=graph_method("ngcn", nodes="holistic")))
register(Method("mangonet_wo_gf", "MangoNet w/o GF", stage="train", uses_neighbours=True, uses_attention=True,
                train=graph_method("mangonet_wo_gf", global_feature=False)))
# The neighbourhood-size rows of tables 1-3, each with its m fixed (the top-level m drives "MangoNet").
for _m in (3, 7, 15):
    register(Method(f"mangonet_m{_m}", f"MangoNet-m{_m}", stage="sweep", uses_neighbours=True, uses_attention=True,
                    m=_m, train=graph_method(f"mangonet_m{_m}")))
