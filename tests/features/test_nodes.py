"""The node store (`mango nodes`): eq. 4-9 computed once give MangoNet what co-attention per batch gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.errors import MangoError
from pipeline.models.mangonet import MangoNet, MangoNetConfig
from pipeline.features.nodes import NodeStore, compute_nodes
from tests.conftest import tiny_context

K = 5  # ranks in the store; the trainers read the first m = 3


def _neighbours(n: int) -> np.ndarray:
    """(N, K) rows: the other images of the topic (8 consecutive rows), some ranks missing."""
    out = np.full((n, K), -1, dtype=np.int64)
    for i in range(n):
        mates = [j for j in range(8 * (i // 8), 8 * (i // 8) + 8) if j != i]
        keep = 2 if i % 5 == 0 else (0 if i % 11 == 0 else K)  # a short list, and an image with none
        out[i, :keep] = mates[:keep]
    return out


def _run(ctx, name: str, nodes: str = "coatten"):
    from pipeline.methods import mangonet as method

    torch.manual_seed(ctx.params.seed)
    return method.train_graph_model(ctx, method.build(ctx, nodes), name)


@pytest.mark.parametrize("settings", [
    {},  # paper-literal
    {"maps": "scores", "target_weights": "geomean", "temperature": 0.1},
    {"weights": "logit", "maps": "beta_p", "target_weights": "mean"},
])
def test_node_store_gives_the_per_batch_predictions_within_fp16_rounding(tmp_path, monkeypatch, settings):
    from pipeline.methods import mangonet as method

    monkeypatch.setattr(method, "NODE_CACHE_BYTES", 0)  # the reference: co-attention in every batch
    ref_ctx, _ = tiny_context(tmp_path / "ref")
    ref_ctx.params.mangonet = dataclasses.replace(ref_ctx.params.mangonet, **settings)
    nb = _neighbours(ref_ctx.store.meta["n"])
    ref_ctx.neighbours = nb[:, :3]
    _, ref_scores, ref_info = _run(ref_ctx, "mangonet")
    assert ref_info["config"]["node_features"] == "this run"

    ctx, _ = tiny_context(tmp_path / "store")
    ctx.params.mangonet = dataclasses.replace(ctx.params.mangonet, **settings)
    ctx.neighbours = nb[:, :3]
    p = ctx.params.mangonet
    compute_nodes(ctx.store.maps, ctx.attention.beta, ctx.attention.y, nb, p.coattention(), p.coatten_pool,
                  tmp_path / "nodes", block=7)  # blocks that split topics
    ctx.nodes = NodeStore.open(tmp_path / "nodes")
    for budget in (0, 1 << 30):  # read from the store batch by batch; the training rows read once into memory
        monkeypatch.setattr(method, "NODE_CACHE_BYTES", budget)
        _, scores, info = _run(ctx, "mangonet")
        assert info["config"]["node_features"] == "node store"
        np.testing.assert_allclose(scores, ref_scores, atol=2e-3)
        np.testing.assert_allclose([h["train_loss"] for h in info["history"]],
                                   [h["train_loss"] for h in ref_info["history"]], rtol=2e-3)
        for key in ("beta_entropy", "alpha_entropy", "alpha_max_ratio"):
            assert info["attention"][key] == pytest.approx(ref_info["attention"][key], abs=2e-3), key
        assert info["attention"]["nodes"] == ref_info["attention"]["nodes"]


def test_node_store_holds_eq_4_to_9_for_every_rank_and_m(tmp_path):
    """Each stored z equals MangoNet.node_features on the explicit graph of (target, first m neighbours)."""
    ctx, _ = tiny_context(tmp_path / "w")
    nb = _neighbours(ctx.store.meta["n"])
    cfg = dataclasses.replace(ctx.params.mangonet, target_weights="geomean").coattention()
    compute_nodes(ctx.store.maps, ctx.attention.beta, ctx.attention.y, nb, cfg, 1, tmp_path / "nodes", block=4, chunk=2)
    store = NodeStore.open(tmp_path / "nodes")
    model = MangoNet(MangoNetConfig(dim=ctx.store.meta["dim"], num_labels=3, hidden=8, coatten=cfg))
    from pipeline.features.batching import gather_maps

    for i in (0, 1, 11, 13):
        for m in range(1, K + 1):
            nodes = np.concatenate([[i], nb[i, :m]])[None]  # (1, m+1)
            mask = torch.from_numpy(nodes >= 0)
            safe = np.where(nodes >= 0, nodes, i)
            z, _ = model.node_features(gather_maps(ctx.store.maps, safe, 1, "avg"), gather_maps(ctx.attention.beta, safe, 1, "max"),
                                       torch.from_numpy(ctx.attention.y[safe]), mask)
            got, _, got_mask = store.inputs(np.array([i]), nb, m)
            assert torch.equal(got_mask, mask)
            torch.testing.assert_close(got[mask], z[mask], atol=2e-3, rtol=2e-3)
            assert not got[~mask].any()  # missing neighbours: zero and masked


def test_ngcn_reads_the_holistic_nodes_from_the_store(tmp_path, monkeypatch):
    from pipeline.methods import mangonet as method

    monkeypatch.setattr(method, "NODE_CACHE_BYTES", 0)
    runs = []
    for with_store in (False, True):
        ctx, _ = tiny_context(tmp_path / str(with_store))
        nb = _neighbours(ctx.store.meta["n"])
        ctx.neighbours = nb[:, :3]
        if with_store:
            p = ctx.params.mangonet
            compute_nodes(ctx.store.maps, ctx.attention.beta, ctx.attention.y, nb, p.coattention(), 1, tmp_path / "n")
            ctx.nodes = NodeStore.open(tmp_path / "n")
        _, scores, info = _run(ctx, "ngcn", nodes="holistic")
        runs.append(scores)
        assert "attention" not in info
    np.testing.assert_allclose(runs[1], runs[0], atol=1e-4)


def test_node_store_refuses_m_beyond_its_ranks_and_other_settings_fall_back(tmp_path, caplog):
    ctx, _ = tiny_context(tmp_path / "w")
    nb = _neighbours(ctx.store.meta["n"])
    p = ctx.params.mangonet
    compute_nodes(ctx.store.maps, ctx.attention.beta, ctx.attention.y, nb, p.coattention(), 1, tmp_path / "nodes")
    store = NodeStore.open(tmp_path / "nodes")
    with pytest.raises(MangoError, match="up to 5 neighbours, m = 6"):
        store.inputs(np.array([0]), np.full((96, 6), -1), 6)
    n, dim = ctx.store.meta["n"], ctx.store.meta["dim"]
    assert store.matches(p.coattention(), 1, nb[:, :3], n, dim) is None
    assert store.matches(None, 1, nb[:, :3], n, dim) is None  # holistic nodes: pool and inputs only
    assert "coatten_pool 1 (wanted 2)" in store.matches(None, 2, nb[:, :3], n, dim)
    other_nb = nb[:, :3].copy()
    other_nb[5, 0] = 40
    assert store.matches(p.coattention(), 1, other_nb, n, dim) == "other neighbour lists"
    assert "95 x 16" in store.matches(p.coattention(), 1, nb[:, :3], 95, dim)
    other = dataclasses.replace(p, temperature=0.5)
    assert "temperature 1.0 (wanted 0.5)" in store.matches(other.coattention(), 1, nb[:, :3], n, dim)
    ctx.params.mangonet = other
    ctx.neighbours = nb[:, :3]
    ctx.nodes = store
    _, _, info = _run(ctx, "mangonet")
    assert info["config"]["node_features"] == "this run"
    assert "does not match this run (temperature" in caplog.text
    ctx.params.mangonet = p
    ctx.neighbours = other_nb  # e.g. a store of another run's neighbour search
    _, _, info = _run(ctx, "mangonet")
    assert info["config"]["node_features"] == "this run"
    assert "other neighbour lists" in caplog.text
    with pytest.raises(MangoError, match="not a node store"):
        NodeStore.open(tmp_path / "missing")
