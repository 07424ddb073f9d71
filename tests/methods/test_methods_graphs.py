"""TagProp (visual neighbours in the training set) and Link-CRF (mean-field CRF on the metadata graph)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.errors import MangoError
from pipeline.methods import get_method
from pipeline.methods.linkcrf import LinkCRF, LinkCRFParams, split_graph
from pipeline.methods.tagprop import TagProp, TagPropParams, visual_neighbours
from pipeline.evaluation.metrics import evaluate_scores
from tests.conftest import tiny_context

LABELS = ["a", "b", "c"]


def _context(tmp_path, **tagprop):
    ctx, targets = tiny_context(tmp_path)
    ctx.params.methods["tagprop"] = {"k": 5, **tagprop}  # 48 training images: K = 20 would span 3 topics
    return ctx, targets


def _mapc(ctx, targets, scores) -> float:
    return evaluate_scores(scores, targets[ctx.rows("test")], LABELS).metrics["mAPC"]


def _label_frequency_mapc(ctx, targets) -> float:
    freq = targets[ctx.rows("train")].mean(axis=0)  # (C,)
    return _mapc(ctx, targets, np.tile(freq, (len(ctx.rows("test")), 1)))


def _check_scores(ctx, scores):
    assert scores.shape == (len(ctx.rows("test")), 3)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert scores.std(axis=0).min() > 1e-3 and scores.std(axis=1).max() > 1e-3  # varies over images and labels


# --- TagProp ---------------------------------------------------------------------------------------


def test_visual_neighbours_by_cosine_excluding_self():
    base = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    pos, dist = visual_neighbours(base, base, 2, exclude=np.arange(4))
    assert pos.tolist() == [[1, 3], [0, 3], [3, 1], [2, 1]]
    cos = (base[0] @ base[1]) / np.linalg.norm(base[1])
    assert dist[0, 0] == pytest.approx(1 - cos, abs=1e-6)
    pos, _ = visual_neighbours(base, np.array([[2.0, 0.1]]), 1)  # scale-free: query normalised
    assert pos.tolist() == [[0]]
    with pytest.raises(MangoError, match="methods.tagprop.k"):
        visual_neighbours(base, base, 4, exclude=np.arange(4))


def test_tagprop_forward_matches_hand_computation():
    y = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, K=2, C=2)
    d = torch.tensor([[0.1, 0.3]])  # (B, K)
    model = TagProp(2, 2, "distance", theta=5.0)
    pi = np.exp([-0.5, -1.5]) / np.exp([-0.5, -1.5]).sum()
    assert torch.allclose(model(y, d), torch.tensor(pi[None], dtype=torch.float32), atol=1e-6)  # alpha 1, beta 0
    rank = TagProp(2, 2, "rank")
    with torch.no_grad():
        rank.gamma.copy_(torch.tensor([np.log(3.0), 0.0]))  # gamma = (0.75, 0.25)
        rank.alpha.fill_(2.0), rank.beta.fill_(-1.0)
    assert torch.allclose(rank(y, d), torch.tensor([[0.5, -0.5]]), atol=1e-6)


def test_tagprop_params_validated():
    with pytest.raises(MangoError, match="methods.tagprop.weights"):
        TagPropParams(weights="knn")
    with pytest.raises(MangoError, match="methods.tagprop.k"):
        TagPropParams(k=0)


@pytest.mark.parametrize("weights", ["distance", "rank"])
def test_tagprop_scores_learn_and_read_the_pooled_features(tmp_path, weights):
    ctx, targets = _context(tmp_path, weights=weights)
    model, scores, info = get_method("tagprop").train(ctx)
    _check_scores(ctx, scores)
    assert info["config"]["weights"] == weights and len(info["history"]) == info["config"]["epochs"]
    assert set(model.state_dict()) >= {"alpha", "beta"}
    assert _mapc(ctx, targets, scores) > _label_frequency_mapc(ctx, targets) + 0.05
    if weights == "rank":
        return  # the same neighbour search as "distance": one shuffle check is enough
    perm = np.random.default_rng(1).permutation(len(ctx.targets))
    shuffled = dataclasses.replace(ctx, store=dataclasses.replace(ctx.store, pooled=np.asarray(ctx.store.pooled)[perm]))
    _, other, _ = get_method("tagprop").train(shuffled)
    assert np.abs(other - scores).max() > 1e-3


# --- Link-CRF -------------------------------------------------------------------------------------


def test_split_graph_local_positions_and_missing_neighbours():
    neighbours = np.array([[2, -1], [0, 2], [0, 1], [3, 3]])  # (N=4, M=2) store rows; row 3 is another split
    scores = np.array([[0.5, np.nan], [0.2, 0.4], [0.1, 0.3], [1.0, 1.0]])
    nb, s = split_graph(neighbours, scores, np.array([0, 1, 2]), 4, "train")
    assert nb.tolist() == [[2, 0], [0, 2], [0, 1]]  # missing -> itself, weight 0
    np.testing.assert_allclose(s, [[0.5, 0.0], [0.2, 0.4], [0.1, 0.3]], rtol=1e-6)
    with pytest.raises(MangoError, match="outside the train split"):
        split_graph(np.array([[3], [0]]), np.ones((2, 1)), np.array([0, 1]), 4, "train")


def test_linkcrf_mean_field_matches_hand_computation():
    u = torch.tensor([[2.0], [-1.0], [0.0]])  # (N=3, C=1) node 2 has no evidence of its own
    nb = torch.tensor([[1], [0], [0]])  # (N, M=1)
    s = torch.tensor([[0.5], [0.5], [1.0]])  # (N, M)
    model = LinkCRF(1, iterations=2)
    with torch.no_grad():
        model.w.fill_(3.0)
    q = torch.sigmoid(u[:, 0]).numpy()
    for _ in range(2):  # synchronous updates
        q = 1 / (1 + np.exp(-(u[:, 0].numpy() + 3.0 * s[:, 0].numpy() * (2 * q[nb[:, 0].numpy()] - 1))))
    with torch.no_grad():
        out = torch.sigmoid(model(u, nb, s, torch.arange(3)))[:, 0]
        flipped = torch.sigmoid(model(torch.tensor([[-2.0], [-1.0], [0.0]]), nb, s, torch.arange(3)))[2, 0]
    assert out.numpy() == pytest.approx(q, abs=1e-6)
    assert out[2] > 0.5  # the link pulls node 2 towards its confident neighbour
    assert flipped < 0.5  # the neighbour's own score flips: so does node 2


def test_linkcrf_params_validated():
    with pytest.raises(MangoError, match="methods.linkcrf.iterations"):
        LinkCRFParams(iterations=0)


def test_linkcrf_scores_use_the_metadata_graph(tmp_path):
    ctx, targets = tiny_context(tmp_path)
    method = get_method("linkcrf")
    assert method.uses_neighbours and method.stage == "nbr_baseline"
    model, scores, info = method.train(ctx)
    _check_scores(ctx, scores)
    assert len(info["history"]) == info["config"]["epochs"]
    assert float(model.w.detach().abs().max()) > 0.1  # learned to use the links
    mapc = _mapc(ctx, targets, scores)
    assert mapc > _label_frequency_mapc(ctx, targets) + 0.05
    assert mapc > _mapc(ctx, targets, ctx.multicnn[ctx.rows("test")])  # the links help the unaries

    test = ctx.rows("test")
    rewired = ctx.neighbours.copy()
    rewired[test] = ctx.neighbours[np.random.default_rng(1).permutation(test)]  # whose neighbours are whose
    _, other, _ = method.train(dataclasses.replace(ctx, neighbours=rewired))
    assert np.abs(other - scores).max() > 1e-3
