"""Training stages on a tiny hand-made feature store: they learn, and they never decode an image."""


import numpy as np
import polars as pl
import pytest
import torch

from pipeline.training.insatten import train_insatten, write_attention
from pipeline.features.store import AttentionStore
from pipeline.config import Params
from pipeline.device import resolve_device
from pipeline.methods import Context, get_method, neighbour_rows
from pipeline.features.store import FeatureStore
from pipeline.training.loop import load_checkpoint, save_checkpoint

N, D, H, W, C = 96, 16, 2, 2, 3


def make_store(root, seed=0):
    """Maps whose channel k lights up at a random position when label k is present."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((N, C)) < 0.4).astype(np.uint8)
    maps = rng.normal(0, 0.3, (N, D, H, W)).astype(np.float32)
    for i in range(N):
        for k in np.flatnonzero(targets[i]):
            maps[i, k, rng.integers(H), rng.integers(W)] += 3.0
    split = np.where(np.arange(N) < N // 2, "train", "test")
    return FeatureStore.write(root, maps, [f"i{i}" for i in range(N)], split.tolist(), ["a", "b", "c"]), targets


@pytest.fixture
def no_decoding(monkeypatch):
    """Any image decode or backbone forward after the feature store fails the test."""
    import PIL.Image

    from pipeline.models.backbone import Backbone

    def boom(*a, **k):
        raise AssertionError("an image was decoded / the backbone ran after the feature store was written")

    monkeypatch.setattr(PIL.Image, "open", boom)
    monkeypatch.setattr(Backbone, "forward", boom)
    monkeypatch.setattr(Backbone, "maps", boom)


def params(**over) -> Params:
    p = Params()
    for section, hidden in ((p.insatten, 32), (p.mangonet, 16)):
        section.epochs, section.lr, section.batch_size, section.hidden = 20, 0.1, 12, hidden
    for k, v in over.items():
        setattr(p, k, v)
    return p


def test_insatten_then_mangonet_learn_without_decoding(tmp_path, no_decoding):
    store, targets = make_store(tmp_path / "features")
    p, device = params(), resolve_device("cpu")
    model = train_insatten(store, targets, p.insatten, device, seed=0)
    (tmp_path / "attention").mkdir()
    probs = write_attention(model, store, device, tmp_path / "attention")
    test = np.arange(N // 2, N)
    acc = ((probs[test] > 0.5) == targets[test]).mean()
    assert acc > 0.8, f"InsAtten should learn the planted signal, accuracy {acc:.2f}"
    att = AttentionStore.open(tmp_path / "attention")
    assert att.beta.shape == (N, C, H, W)
    np.testing.assert_allclose(att.beta.astype(np.float32).sum(axis=(2, 3)), 1.0, atol=2e-3)

    # neighbours: the previous image of the same split
    rows = pl.DataFrame({"image_id": [f"i{i}" for i in range(1, N) if i != N // 2], "rank": 1,
                         "neighbour_id": [f"i{i - 1}" for i in range(1, N) if i != N // 2], "score": 0.5})
    nb, nb_scores = neighbour_rows(rows, store, 1)
    assert np.isnan(nb_scores[0, 0]) and nb_scores[5, 0] == 0.5
    assert nb[0, 0] == -1 and nb[5, 0] == 4
    ctx = Context(store=store, attention=att, neighbours=nb, targets=targets, params=params(m=1), device=device, m=1)
    net, scores, info = get_method("mangonet").train(ctx)
    assert scores.shape == (N // 2, C)
    assert ((scores > 0.5) == targets[test]).mean() > 0.8
    assert info["history"][-1]["train_loss"] < info["history"][0]["train_loss"]

    save_checkpoint(tmp_path / "m.pt", net, info["config"], labels=["a", "b", "c"])
    ckpt = load_checkpoint(tmp_path / "m.pt")  # weights_only=True inside
    assert ckpt["config"]["m"] == 1 and set(ckpt["model"]) == set(net.state_dict())


def test_mangonet_reads_its_neighbours(tmp_path):
    """Scores depend on the neighbourhood: permuting which image is whose neighbour changes them."""
    store, targets = make_store(tmp_path / "features")
    device = resolve_device("cpu")
    p = params(m=2)
    (tmp_path / "attention").mkdir()
    write_attention(train_insatten(store, targets, p.insatten, device, 0), store, device, tmp_path / "attention")
    att = AttentionStore.open(tmp_path / "attention")
    rng = np.random.default_rng(1)
    nb = np.full((N, 2), -1)
    for lo, hi in ((0, N // 2), (N // 2, N)):
        for i in range(lo, hi):
            nb[i] = rng.choice([j for j in range(lo, hi) if j != i], 2, replace=False)
    from pipeline.methods.mangonet import build, graph_batch

    torch.manual_seed(0)
    ctx = Context(store=store, attention=att, neighbours=nb, targets=targets, params=p, device=device, m=2)
    net = build(ctx).eval()
    idx = np.arange(N // 2, N)
    with torch.no_grad():
        a = net(*graph_batch(ctx, idx, 2, 1))
        shuffled = nb.copy()
        shuffled[N // 2:] = nb[N // 2:][rng.permutation(N // 2)]
        b = net(*graph_batch(Context(store=store, attention=att, neighbours=shuffled, targets=targets, params=p, device=device, m=2), idx, 2, 1))
    assert not torch.allclose(a, b)
