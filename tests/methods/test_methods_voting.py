"""Meta+Logistic, KNN and CNN Voting on the tiny planted context: contract, inputs that matter, quality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.errors import MangoError
from pipeline.methods import get_method
from pipeline.methods.cnnvoting import neighbour_mean, vote, weight_grid
from pipeline.methods.knn import vote as knn_vote
from pipeline.evaluation.metrics import evaluate_scores
from tests.conftest import tiny_context


def _check_contract(ctx, scores):
    n_test, c = len(ctx.rows("test")), ctx.targets.shape[1]
    assert scores.shape == (n_test, c)
    assert np.isfinite(scores).all() and scores.min() >= 0.0 and scores.max() <= 1.0
    assert scores.std(axis=0).min() > 0 and scores.std(axis=1).max() > 0  # varies across images and labels


def _mapc(ctx, scores) -> float:
    return evaluate_scores(scores, ctx.targets[ctx.rows("test")], ctx.store.labels).metrics["mAPC"]


def _frequency_mapc(ctx) -> float:
    """mAPC of the label-frequency baseline (every test image scored with the training label rates)."""
    prior = ctx.targets[ctx.rows("train")].mean(axis=0)
    return _mapc(ctx, np.tile(prior, (len(ctx.rows("test")), 1)))


def test_registered_with_their_flags():
    ml, knn, cv = get_method("metalogistic"), get_method("knn"), get_method("cnnvoting")
    assert (ml.title, ml.stage, ml.uses_metadata, ml.uses_neighbours) == ("Meta+Logistic", "baseline", True, False)
    assert (knn.title, knn.stage, knn.uses_metadata, knn.uses_neighbours) == ("KNN", "baseline", False, False)
    assert (cv.title, cv.stage, cv.uses_neighbours, cv.uses_attention) == ("CNN Voting", "nbr_baseline", True, False)


@pytest.mark.parametrize("name,section", [("metalogistic", {"epochs": 0}), ("knn", {"k": 0}),
                                          ("knn", {"weighting": "rank"}), ("cnnvoting", {"val_fraction": 0.0})])
def test_bad_params_name_the_key(tmp_path, name, section):
    ctx, _ = tiny_context(tmp_path, with_attention=False)
    ctx.params.methods[name] = section
    with pytest.raises(MangoError, match=f"methods.{name}.{next(iter(section))}"):
        get_method(name).train(ctx)


# --- Meta+Logistic ---------------------------------------------------------------------------


def _tagged(ctx, seed: int = 0):
    """The context with a term matrix whose tags speak about the labels: 'tag_c' on 70% of the
    images with label c, plus two of 30 noise terms on every image (the tiny fixture's own terms
    name topics, and test topics never occur in training)."""
    rng = np.random.default_rng(seed)
    n, c = ctx.targets.shape
    dense = np.zeros((n, c + 30), dtype=np.float32)
    dense[:, :c] = ctx.targets * (rng.random((n, c)) < 0.7)
    dense[np.arange(n)[:, None], c + rng.integers(0, 30, (n, 2))] = 1
    return dataclasses.replace(ctx, metadata=sp.csr_matrix(dense))


def test_metalogistic_contract_input_and_quality(tmp_path):
    ctx, _ = tiny_context(tmp_path, with_attention=False)
    ctx = _tagged(ctx)
    train = get_method("metalogistic").train
    model, scores, info = train(ctx)
    _check_contract(ctx, scores)
    assert model.weight.shape == (3, ctx.metadata.shape[1])
    history = info["history"]
    assert len(history) == info["config"]["epochs"] and history[-1]["train_loss"] < history[0]["train_loss"]
    assert _mapc(ctx, scores) > _frequency_mapc(ctx) + 0.1
    # deterministic given the seed
    np.testing.assert_array_equal(train(ctx)[1], scores)
    # shuffling which image owns which term vector changes the scores
    perm = np.random.default_rng(1).permutation(ctx.metadata.shape[0])
    _, shuffled, _ = train(dataclasses.replace(ctx, metadata=ctx.metadata[perm]))
    assert np.abs(shuffled - scores).max() > 0.05


# --- KNN ---------------------------------------------------------------------------------------


def test_knn_vote_by_hand():
    labels = np.array([[[1, 0], [1, 1], [0, 0]]])  # (B=1, K=3, C=2)
    np.testing.assert_allclose(knn_vote(labels, np.array([[0.9, 0.5, 0.1]]), "plain"), [[2 / 3, 1 / 3]])
    np.testing.assert_allclose(knn_vote(labels, np.array([[0.6, 0.2, -0.4]]), "similarity"), [[1.0, 0.25]])
    np.testing.assert_allclose(knn_vote(labels, np.array([[-0.1, 0.0, -0.4]]), "similarity"), [[2 / 3, 1 / 3]])


def _brute_force_knn(ctx, k: int) -> np.ndarray:
    """Independent cosine kNN label vote in numpy."""
    x = ctx.store.pooled.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tr, te = ctx.rows("train"), ctx.rows("test")
    sim = x[te] @ x[tr].T  # (N_test, N_train)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (N_test, K)
    return ctx.targets[tr][nearest].mean(axis=1)


def test_knn_contract_matches_brute_force_and_uses_features(tmp_path):
    ctx, _ = tiny_context(tmp_path, with_attention=False)
    train = get_method("knn").train
    model, scores, info = train(ctx)
    assert model is None and info["config"]["k"] == 10 and info["history"] == []
    _check_contract(ctx, scores)
    np.testing.assert_allclose(scores, _brute_force_knn(ctx, 10), atol=1e-6)
    assert _mapc(ctx, scores) > _frequency_mapc(ctx) + 0.1
    # similarity weighting, a different K, and shuffled features all change the scores
    ctx.params.methods["knn"] = {"weighting": "similarity", "k": 5}
    _, weighted, info = train(ctx)
    assert info["config"]["weighting"] == "similarity" and not np.allclose(weighted, scores)
    ctx.params.methods["knn"] = {}
    perm = np.random.default_rng(1).permutation(ctx.store.pooled.shape[0])
    shuffled_store = dataclasses.replace(ctx.store, pooled=np.asarray(ctx.store.pooled)[perm])
    _, shuffled, _ = train(dataclasses.replace(ctx, store=shuffled_store))
    assert np.abs(shuffled - scores).max() > 0.1


# --- CNN Voting --------------------------------------------------------------------------------


def test_cnnvoting_vote_by_hand():
    f = np.array([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.5, 0.5]])  # (N=4, C=2)
    nb = np.array([[1, 2], [2, -1], [-1, -1]])  # rows 0, 1, 3 of f: two, one and no neighbour
    mean = neighbour_mean(f, nb)
    np.testing.assert_allclose(mean[:2], [[0.8, 0.2], [1.0, 0.0]])
    assert np.isnan(mean[2]).all()
    out = vote(f[[0, 1, 3]], mean, 0.25)
    np.testing.assert_allclose(out, [[0.35, 0.65], [0.7, 0.3], [0.5, 0.5]])
    np.testing.assert_allclose(vote(f[[0, 1, 3]], mean, 0.0), f[[0, 1, 3]])
    assert len(weight_grid(0.05)) == 21 and weight_grid(0.05)[-1] == 1.0 and weight_grid(0.3).tolist()[-1] == 1.0


def test_cnnvoting_contract_neighbours_and_quality(tmp_path):
    ctx, _ = tiny_context(tmp_path, with_attention=False)
    train = get_method("cnnvoting").train
    model, scores, info = train(ctx)
    assert model is None and info["history"] == []
    _check_contract(ctx, scores)
    w = info["config"]["w"]
    assert 0 < w <= 1 and len(info["config"]["validation"]) == 21
    test_rows = ctx.rows("test")
    # beats both the label-frequency baseline and Multi-CNN alone (neighbours share the labels)
    assert _mapc(ctx, scores) > _frequency_mapc(ctx) + 0.1
    assert _mapc(ctx, scores) > _mapc(ctx, ctx.multicnn[test_rows])
    # permuting whose neighbours are whose (among test rows) changes the scores
    nb = ctx.neighbours.copy()
    nb[test_rows] = nb[np.random.default_rng(1).permutation(test_rows)]
    _, permuted, info2 = train(dataclasses.replace(ctx, neighbours=nb))
    assert info2["config"]["w"] == w and np.abs(permuted - scores).max() > 0.05
    # no neighbour at all: every image keeps its own Multi-CNN score
    _, alone, _ = train(dataclasses.replace(ctx, neighbours=np.full_like(ctx.neighbours, -1)))
    np.testing.assert_allclose(alone, ctx.multicnn[test_rows], rtol=1e-6)
