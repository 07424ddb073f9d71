"""Training and prediction for MangoNet (eq. 4-11) on cached features, attention and neighbours."""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np
import torch
from torch import nn

from pipeline.features.batching import gather_maps, index_batches, n_batches
from pipeline.config import family_params
from pipeline.device import autocast
from pipeline.methods import Context, Method, register
from pipeline.models.mangonet import MangoNet, MangoNetConfig, normalised_entropy
from pipeline.training.loop import fit_rows, predict

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
    return MangoNet(MangoNetConfig(dim=ctx.store.meta["dim"], num_labels=len(ctx.store.labels), hidden=p.hidden, nodes=nodes,
                                   global_feature=global_feature, coatten=p.coattention()))


class _Head(nn.Module):
    """MangoNet's learnt part on precomputed inputs (z, target_global, mask): what `fit` trains."""

    def __init__(self, model: MangoNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, target_global: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.head(z, target_global, mask)


# Node features cached in memory up to this size; beyond it they are computed batch by batch.
NODE_CACHE_BYTES = 4 << 30


class AttentionStats:
    """Running means over existing nodes (target and neighbours): normalised entropy of beta (per
    label map) and of alpha (1 = uniform), and alpha_max * P (1 = uniform)."""

    def __init__(self) -> None:
        self.beta = self.alpha = self.ratio = 0.0
        self.nodes = self.positions = 0

    def add(self, beta: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor) -> None:
        """beta (B, N, C, P), alpha (B, N, P), mask (B, N)."""
        self.beta += float(normalised_entropy(beta.float()).mean(dim=-1)[mask].sum())  # mean over the C maps
        self.alpha += float(normalised_entropy(alpha.float())[mask].sum())
        self.ratio += float((alpha.amax(dim=-1) * alpha.shape[-1])[mask].sum())
        self.nodes += int(mask.sum())
        self.positions = int(alpha.shape[-1])

    def summary(self) -> dict:
        n = max(self.nodes, 1)
        return {"beta_entropy": round(self.beta / n, 4), "alpha_entropy": round(self.alpha / n, 4),
                "alpha_max_ratio": round(self.ratio / n, 4), "positions": self.positions, "nodes": self.nodes}


@torch.no_grad()
def node_batches(ctx: Context, model: MangoNet, rows: np.ndarray, m: int, pool: int,
                 stats: AttentionStats | None = None):
    """Eq. 4-9 for `rows`, 256 at a time: yields (z (B, N, D), target_global (B, D), mask (B, N))
    on the run's device, adding each batch's attention to `stats` (co-attention nodes)."""
    model.to(ctx.device).eval()
    for idx in index_batches(rows, 256, shuffle=False):
        phi, beta, y, mask = (x.to(ctx.device) for x in graph_batch(ctx, idx, m, pool))
        # a learnt temperature trains eq. 4-9 under the run's autocast: predict under it too
        with autocast(ctx.device) if model.learns_coattention else contextlib.nullcontext():
            z, alpha = model.node_features(phi, beta, y, mask)  # (B, N, D), (B, N, P) or None
        z, alpha = z.float(), None if alpha is None else alpha.float()
        if stats is not None and alpha is not None:
            stats.add(beta, alpha, mask)
        yield z, phi[:, 0].mean(dim=-1), mask  # target_global: average-pooled phi(i)


def node_inputs(ctx: Context, model: MangoNet, rows: np.ndarray, m: int, pool: int) -> tuple[torch.Tensor, ...]:
    """Eq. 4-9 once for `rows`: z (R, N, D), target_global (R, D), mask (R, N), float32 on the CPU.

    With InsAtten frozen (stage-wise training, section 3.2) nothing in eq. 4-9 is learnt (unless the
    co-attention temperature is): the node features are a function of the cached phi, beta, y and
    the neighbour list, so they are computed once here instead of in every epoch."""
    parts = [tuple(x.cpu() for x in batch) for batch in node_batches(ctx, model, rows, m, pool)]
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))


def predict_graph(ctx: Context, model: MangoNet, rows: np.ndarray, m: int, pool: int,
                  stats: AttentionStats | None = None, desc: str = "predict", fp16_nodes: bool = False) -> np.ndarray:
    """Sigmoid scores (R, C) of a trained MangoNet-family model for store `rows`, their node features
    computed here (eq. 4-9, fp32) from the context's stores and neighbour lists: the prediction path
    of the trainer without a node store, and of `mango annotate`. `fp16_nodes`: the node features
    rounded to float16 as the node store holds them (the trainer's path with a node store)."""
    batches = node_batches(ctx, model, rows, m, pool, stats)
    if fp16_nodes:
        batches = ((z.half().float(), target_global, mask) for z, target_global, mask in batches)
    return predict(_Head(model), batches, ctx.device, n_batches(len(rows), 256), desc=desc)


def store_batches(ctx: Context, rows: np.ndarray, m: int, holistic: bool, batch_size: int = 256):
    """Head inputs (z, target_global, mask) for `rows` from the node store, in order."""
    for idx in index_batches(rows, batch_size, shuffle=False):
        yield ctx.nodes.inputs(idx, ctx.neighbours, m, holistic)


def reads_node_store(ctx: Context, model: MangoNet, name: str) -> bool:
    """Whether this run takes its node features from the node store (`mango nodes`)."""
    if ctx.nodes is None or model.learns_coattention:
        if ctx.nodes is not None:
            log.info("%s: the co-attention temperature is learnt: node features computed in every batch, "
                     "the node store is not read", name)
        return False
    why = ctx.nodes.matches(model.coatten if model.nodes == "coatten" else None, ctx.params.mangonet.coatten_pool,
                            ctx.neighbours[:, :ctx.m], ctx.store.meta["n"], ctx.store.meta["dim"])
    if why:
        log.warning("%s: the node store %s does not match this run (%s): computing the node features in this run "
                    "instead; re-run the nodes stage", name, ctx.nodes.root, why)
        return False
    return True


def train_graph_model(ctx: Context, model: MangoNet, name: str) -> tuple[MangoNet, np.ndarray, dict]:
    """Fit a MangoNet-family model on training rows (train neighbours); score the test rows, in one
    pass that also measures the co-attention maps.

    Node features come from the node store when there is one (`mango nodes`, computed once for
    every m), else they are computed here once (in memory up to NODE_CACHE_BYTES), else in every
    batch (a learnt co-attention temperature, or too many rows)."""
    p, m, seed = family_params(ctx.params, name), ctx.m, ctx.params.seed
    train_rows, test_rows = ctx.rows("train"), ctx.rows("test")
    targets = torch.from_numpy(ctx.targets.astype(np.float32))
    from_store = reads_node_store(ctx, model, name)
    holistic = model.nodes == "holistic"
    fits = len(train_rows) * (m + 1) * ctx.store.meta["dim"] * 4 <= NODE_CACHE_BYTES
    if model.learns_coattention:
        log.info("%s: co-attention runs in every batch (its temperature is learnt)", name)
        trained, rows, fit_targets = model, train_rows, targets

        def batch_inputs(idx: np.ndarray) -> tuple[torch.Tensor, ...]:
            return graph_batch(ctx, idx, m, p.coatten_pool)
    elif fits:  # the training rows' node features in memory, read or computed once
        cached = (ctx.nodes.inputs(train_rows, ctx.neighbours, m, holistic) if from_store
                  else node_inputs(ctx, model, train_rows, m, p.coatten_pool))
        trained, rows, fit_targets = _Head(model), np.arange(len(train_rows)), targets[train_rows]

        def batch_inputs(i: np.ndarray) -> tuple[torch.Tensor, ...]:
            return tuple(x[i] for x in cached)
    else:
        log.info("%s: node features of %d rows exceed %.0f GB: %s batch by batch", name, len(train_rows),
                 NODE_CACHE_BYTES / 2**30, "read from the node store" if from_store else "computed")
        trained, rows, fit_targets = _Head(model), train_rows, targets

        def batch_inputs(idx: np.ndarray) -> tuple[torch.Tensor, ...]:
            if from_store:
                return ctx.nodes.inputs(idx, ctx.neighbours, m, holistic)
            with torch.no_grad():  # fp32, as in the cached and store paths: nothing in them is learnt
                phi, beta, y, mask = graph_batch(ctx, idx, m, p.coatten_pool)
                z, _ = model.node_features(phi, beta, y, mask)
            return z, phi[:, 0].mean(dim=-1), mask

    history = fit_rows(trained, rows, batch_inputs, fit_targets, p, ctx.device, name, ctx.live_dir, seed=seed)
    if from_store:
        test_inputs = store_batches(ctx, test_rows, m, holistic)
        stats = None
        scores = predict(_Head(model), test_inputs, ctx.device, n_batches(len(test_rows), 256), desc=f"{name}: predict")
    else:
        stats = AttentionStats()
        scores = predict_graph(ctx, model, test_rows, m, p.coatten_pool, stats, desc=f"{name}: predict")
    config = {"method": name, "m": m, **dataclasses.asdict(p), "nodes": model.nodes, "global_feature": model.global_feature,
              "node_features": "node store" if from_store else "this run"}
    info = {"config": config, "history": history}
    if model.nodes == "coatten":
        info["attention"] = ctx.nodes.attention(test_rows, ctx.neighbours, m) if from_store else stats.summary()
    return model, scores, info


def graph_method(name: str, nodes: str = "coatten", global_feature: bool = True):
    """A trainer for one member of the MangoNet family (the model, or an ablation of it)."""

    def train(ctx: Context):
        torch.manual_seed(ctx.params.seed)
        return train_graph_model(ctx, build(ctx, nodes, global_feature), name)

    return train


def _create(ctx: Context, config: dict) -> MangoNet:
    return build(ctx, config["nodes"], config["global_feature"])


def _inputs(ctx: Context, rows: np.ndarray, config: dict) -> tuple[torch.Tensor, ...]:
    return graph_batch(ctx, rows, int(config["m"]), int(config["coatten_pool"]))


register(Method("mangonet", "MangoNet", stage="train", uses_neighbours=True, uses_attention=True,
                train=graph_method("mangonet"), create=_create, inputs=_inputs))
# Ablations of section 4.4: holistic (average-pooled) node features; no global-feature concatenation.
register(Method("ngcn", "NGCN", stage="train", uses_neighbours=True, uses_attention=True,
                train=graph_method("ngcn", nodes="holistic"), create=_create, inputs=_inputs))
register(Method("mangonet_wo_gf", "MangoNet w/o GF", stage="train", uses_neighbours=True, uses_attention=True,
                train=graph_method("mangonet_wo_gf", global_feature=False), create=_create, inputs=_inputs))
# The neighbourhood-size rows of tables 1-3, each with its m fixed (the top-level m drives "MangoNet").
for _m in (3, 7, 15):
    register(Method(f"mangonet_m{_m}", f"MangoNet-m{_m}", stage="sweep", uses_neighbours=True, uses_attention=True,
                    m=_m, train=graph_method(f"mangonet_m{_m}"), create=_create, inputs=_inputs))
