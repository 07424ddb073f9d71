"""SRN and NCNN on the tiny planted-signal context: contract, use of their defining inputs, quality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.attention import AttentionStore
from pipeline.errors import MangoError
from pipeline.methods import get_method
from pipeline.methods.ncnn import NCNNParams, NeighbourhoodCNN
from pipeline.methods.srn import SRNParams, MapGroupConv
from pipeline.metrics import evaluate_scores
from tests.conftest import tiny_context

SMALL = {"epochs": 20, "lr": 0.1, "batch_size": 12, "hidden": 16}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine thread hand-offs
    make each step 10-50x slower; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def context(tmp_path, name: str, **overrides):
    ctx, targets = tiny_context(tmp_path)
    ctx.params.methods = {name: {**SMALL, **overrides}}
    return ctx, targets


def run(ctx, name: str) -> np.ndarray:
    _, scores, info = get_method(name).train(ctx)
    assert info["history"] and info["config"]["method"] == name
    return scores


def map_c(ctx, targets, scores) -> float:
    return evaluate_scores(scores, targets[ctx.rows("test")], ctx.store.labels).metrics["mAPC"]


def label_frequency_map_c(ctx, targets) -> float:
    freq = targets[ctx.rows("train")].mean(axis=0)  # (C,)
    return map_c(ctx, targets, np.tile(freq, (len(ctx.rows("test")), 1)))


def check_contract(ctx, scores):
    assert scores.shape == (len(ctx.rows("test")), len(ctx.store.labels))
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert scores.std(axis=0).min() > 1e-3 and scores.std(axis=1).max() > 1e-3  # varies over images and labels


# SRN ----------------------------------------------------------------------------------------------

def test_map_group_conv_equals_grouped_conv():
    torch.manual_seed(0)
    fast = MapGroupConv(6, 4, 3, 2)
    ref = nn.Conv2d(6, 24, kernel_size=(3, 2), groups=6)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(5, 6, 3, 2)
    torch.testing.assert_close(fast(x), ref(x).flatten(1))


def test_srn_contract_inputs_and_quality(tmp_path):
    ctx, targets = context(tmp_path, "srn")
    scores = run(ctx, "srn")
    check_contract(ctx, scores)
    assert map_c(ctx, targets, scores) > label_frequency_map_c(ctx, targets) + 0.05

    # f_sr reads the attention maps: other images' maps give other scores
    beta = np.asarray(ctx.attention.beta)
    perm = np.random.default_rng(1).permutation(len(beta))
    ctx.attention = AttentionStore(beta=beta[perm], y=ctx.attention.y)
    assert np.abs(run(ctx, "srn") - scores).max() > 1e-3


def test_srn_alpha_one_is_the_backbone_score(tmp_path):
    ctx, _ = context(tmp_path, "srn", alpha=1.0, epochs=1)
    scores = run(ctx, "srn")
    np.testing.assert_allclose(scores, ctx.multicnn[ctx.rows("test")], atol=1e-5)


def test_srn_params_validate():
    with pytest.raises(MangoError, match="methods.srn.alpha"):
        SRNParams(alpha=1.5)
    with pytest.raises(MangoError, match="methods.srn.lr"):
        SRNParams(lr=0.0)


# NCNN ---------------------------------------------------------------------------------------------

def test_ncnn_masks_missing_neighbours():
    torch.manual_seed(0)
    model = NeighbourhoodCNN(4, 3, hidden=5)
    x, nb = torch.randn(2, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = model(x, nb, mask)
    nb2 = nb.clone()
    nb2[~mask] = 100.0  # what a missing neighbour holds does not matter
    torch.testing.assert_close(model(x, nb2, mask), out)
    # no neighbour: the pooled vector is zeros
    torch.testing.assert_close(out[1], model.classify(torch.cat([x[1], torch.zeros(5)])))
    # present neighbours: max of their ReLU embeddings
    s = torch.relu(model.embed(nb[0, [0, 2]])).amax(dim=0)
    torch.testing.assert_close(out[0], model.classify(torch.cat([x[0], s])))


def test_ncnn_contract_inputs_and_quality(tmp_path):
    ctx, targets = context(tmp_path, "ncnn")
    scores = run(ctx, "ncnn")
    check_contract(ctx, scores)
    good = map_c(ctx, targets, scores)
    assert good > label_frequency_map_c(ctx, targets) + 0.05

    # visual input: shuffling whose pooled feature is whose changes the scores
    pooled = np.asarray(ctx.store.pooled)
    perm = np.random.default_rng(1).permutation(len(pooled))
    shuffled = dataclasses.replace(ctx, store=dataclasses.replace(ctx.store, pooled=pooled[perm]))
    assert np.abs(run(shuffled, "ncnn") - scores).max() > 1e-3

    # neighbourhood: neighbours drawn at random from the same split give other, worse scores
    rng = np.random.default_rng(2)
    split = ctx.store.index["split"].to_numpy()
    random_nb = ctx.neighbours.copy()
    for i in range(len(random_nb)):
        random_nb[i] = rng.choice(np.flatnonzero(split == split[i]), size=ctx.m, replace=False)
    rewired = dataclasses.replace(ctx, neighbours=random_nb)
    rewired_scores = run(rewired, "ncnn")
    assert np.abs(rewired_scores - scores).max() > 1e-3
    assert good > map_c(ctx, targets, rewired_scores)


def test_ncnn_params_validate():
    with pytest.raises(MangoError, match="methods.ncnn.hidden"):
        NCNNParams(hidden=0)


def test_mangonet_precomputed_node_features_equal_the_per_batch_path(tmp_path, monkeypatch):
    """Eq. 4-9 computed once (the cached path) trains and predicts exactly as co-attention per batch."""
    from pipeline.methods import mangonet as method

    runs = []
    for budget in (method.NODE_CACHE_BYTES, 0):  # 0: nothing fits, co-attention runs in every batch
        monkeypatch.setattr(method, "NODE_CACHE_BYTES", budget)
        ctx, _ = tiny_context(tmp_path / str(budget))
        _, scores, info = method.graph_method("mangonet")(ctx)
        runs.append((scores, [h["train_loss"] for h in info["history"]]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], atol=1e-5)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-5)


def test_mangonet_reports_attention_statistics_and_a_temperature_sharpens_alpha(tmp_path):
    from pipeline.data import read_attention_stats, write_predictions
    from pipeline.methods import mangonet as method

    stats = {}
    for temp in (1.0, 0.01):
        ctx, _ = tiny_context(tmp_path / str(temp))
        ctx.params.mangonet = dataclasses.replace(ctx.params.mangonet, maps="scores", temperature=temp, epochs=1)
        _, scores, info = method.graph_method("mangonet")(ctx)
        stats[temp] = info["attention"]
    for st in stats.values():
        assert 0.0 <= st["alpha_entropy"] <= 1.0 and st["alpha_max_ratio"] >= 1.0 and st["nodes"] > 0
        assert st["beta_entropy"] == stats[1.0]["beta_entropy"]  # the same InsAtten maps
    assert stats[0.01]["alpha_entropy"] < stats[1.0]["alpha_entropy"]
    assert stats[0.01]["alpha_max_ratio"] > stats[1.0]["alpha_max_ratio"]
    _, _, ngcn = method.graph_method("ngcn", nodes="holistic")(ctx)
    assert "attention" not in ngcn  # holistic nodes: no co-attention to measure
    path = tmp_path / "p.parquet"
    write_predictions(path, ["a", "b"], np.full((2, 3), 0.5), ["x", "y", "z"], attention=stats[1.0])
    assert read_attention_stats(path) == stats[1.0]
    write_predictions(path, ["a", "b"], np.full((2, 3), 0.5), ["x", "y", "z"])
    assert read_attention_stats(path) is None
