"""SRN and NCNN on the tiny planted-signal context: contract, use of their defining inputs, quality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.features.store import AttentionStore
from pipeline.errors import MangoError
from pipeline.methods import get_method
from pipeline.methods.ncnn import NCNNParams, NeighbourhoodCNN
from pipeline.methods.srn import SRNParams, MapGroupConv
from pipeline.evaluation.metrics import evaluate_scores
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

def _ncnn_with(w_h, b_h, w_o, b_o) -> NeighbourhoodCNN:
    """A NeighbourhoodCNN whose two FC layers hold the given weights."""
    w_h, w_o = np.asarray(w_h, np.float32), np.asarray(w_o, np.float32)
    model = NeighbourhoodCNN(w_h.shape[1], w_o.shape[0], hidden=w_h.shape[0])
    with torch.no_grad():
        model.embed.weight.copy_(torch.from_numpy(w_h))
        model.embed.bias.copy_(torch.tensor(b_h, dtype=torch.float32))
        model.classify.weight.copy_(torch.from_numpy(w_o))
        model.classify.bias.copy_(torch.tensor(b_o, dtype=torch.float32))
    return model.eval()


def test_ncnn_forward_matches_hand_computed_scores():
    """Johnson et al.'s head with set weights (D = 2, hidden = 3, C = 2), worked out by hand:
    h_j = ReLU(W_h v_j + b_h), s = max over present j (0 with none), y = W_o [v_x ; s] + b_o.

    Image 0: neighbours v1 = (2, 1) and v2 = (-1, 3) present, v3 = (4, 4) missing.
      W_h v1 + b_h = (2, 0.5, -1.5) -> ReLU (2, 0.5, 0);  W_h v2 + b_h = (-1, 2.5, -6.5) -> (0, 2.5, 0)
      s = max = (2, 2.5, 0)   [mean would be (1, 1.5, 0); without ReLU unit 3 would be -1.5;
                               with v3 counted, (4, 3.5, 0)]
      y = W_o (1, 2, 2, 2.5, 0) + b_o = (1 + 4 + 6 + 10 + 0.1, -1 + 2 - 0.2) = (21.1, 0.8)
    Image 1: no neighbour present: s = 0, y = W_o (0.5, -1, 0, 0, 0) + b_o = (-1.4, -0.7).
    Image 2: only v3 = (1, 3) present: h = (1, 2.5, -4.5) -> (1, 2.5, 0), s = h,
      y = W_o (0, 0, 1, 2.5, 0) + b_o = (3 + 10 + 0.1, 1 - 0.2) = (13.1, 0.8).
    Image 3: image 0's x and neighbours, and v3 = (1, 1) present too: h3 = (1, 0.5, -2.5) -> (1, 0.5, 0)
      leaves the max at (2, 2.5, 0), so y = (21.1, 0.8)   [unit 3 is negative for every neighbour:
      without ReLU s_3 = -1.5 and y = (13.6, 3.8); the mean (1, 7/6, 0) would give
      y_1 = 1 + 4 + 3 + 14/3 + 0.1 = 12.77]
    """
    model = _ncnn_with(w_h=[[1, 0], [0, 1], [1, -1]], b_h=[0, -0.5, -2.5],
                       w_o=[[1, 2, 3, 4, 5], [-1, 0, 1, 0, -2]], b_o=[0.1, -0.2])
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 0.0], [1.0, 2.0]])
    nb = torch.tensor([[[2.0, 1.0], [-1.0, 3.0], [4.0, 4.0]],
                       [[3.0, 3.0], [1.0, 1.0], [0.0, 5.0]],
                       [[5.0, 5.0], [9.0, -9.0], [1.0, 3.0]],
                       [[2.0, 1.0], [-1.0, 3.0], [1.0, 1.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False], [False, False, True], [True, True, True]])
    with torch.no_grad():
        out = model(x, nb, mask)
    expected = torch.tensor([[21.1, 0.8], [-1.4, -0.7], [13.1, 0.8], [21.1, 0.8]])
    torch.testing.assert_close(out, expected)
    # what a missing neighbour holds does not matter
    nb2 = nb.clone()
    nb2[~mask] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(model(x, nb2, mask), expected)


def _ncnn_reference(x, nb, mask, w_h, b_h, w_o, b_o) -> np.ndarray:
    """The module docstring's equations in numpy, one image and one neighbour at a time."""
    out = np.zeros((len(x), len(b_o)))
    for b in range(len(x)):
        s = np.zeros(len(b_h))  # no neighbour: s = 0
        for j in np.flatnonzero(mask[b]):
            h_j = np.maximum(w_h @ nb[b, j] + b_h, 0.0)  # ReLU(W_h v_j + b_h)
            s = np.maximum(s, h_j)  # max over present neighbours (h_j >= 0, so starting at 0 is exact)
        out[b] = w_o @ np.concatenate([x[b], s]) + b_o  # W_o [v_x ; s] + b_o
    return out


def test_ncnn_forward_matches_the_reference_equations_on_random_weights():
    rng = np.random.default_rng(0)
    d, hidden, c, b, m = 4, 6, 3, 5, 3
    w_h, b_h = rng.normal(size=(hidden, d)), rng.normal(size=hidden)
    b_h[0] = -20.0  # unit 0 is negative for every neighbour: only ReLU (not the mask) makes it 0
    w_o, b_o = rng.normal(size=(c, d + hidden)), rng.normal(size=c)
    x, nb = rng.normal(size=(b, d)), rng.normal(size=(b, m, d))
    mask = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    model = _ncnn_with(w_h, b_h, w_o, b_o)
    with torch.no_grad():
        out = model(torch.tensor(x, dtype=torch.float32), torch.tensor(nb, dtype=torch.float32), torch.from_numpy(mask))
    np.testing.assert_allclose(out.numpy(), _ncnn_reference(x, nb, mask, w_h, b_h, w_o, b_o), rtol=1e-5, atol=1e-5)


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
    from pipeline.data.tables import read_attention_stats, write_predictions
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
