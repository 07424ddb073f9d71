"""Shared fixtures: tiny datasets written by the tests in the official on-disk layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_mirflickr(root: Path, n: int = 12, seed: int = 0, labels: dict[str, list[int]] | None = None,
                    tags: dict[int, list[str]] | None = None, size: int = 40) -> Path:
    """A MIRFlickr-25k tree: mirflickr/im{N}.jpg, meta/tags{,_raw}/tags{N}.txt, annotation files."""
    rng = np.random.default_rng(seed)
    img_dir = root / "mirflickr"
    (img_dir / "meta" / "tags").mkdir(parents=True)
    (img_dir / "meta" / "tags_raw").mkdir(parents=True)
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(img_dir / f"im{i}.jpg")
    tags = tags if tags is not None else {i: ["Dogs", "the Sea", f"owner{i % 3}"] for i in range(1, n + 1)}
    for i, ts in tags.items():
        (img_dir / "meta" / "tags_raw" / f"tags{i}.txt").write_text("\n".join(ts) + "\n")
        (img_dir / "meta" / "tags" / f"tags{i}.txt").write_text("\n".join(t.lower().replace(" ", "") for t in ts) + "\n")
    ann = root / "mirflickr25k_annotations_v080"
    ann.mkdir()
    labels = labels if labels is not None else {"dog": [1, 2, 3, 5], "sea": [2, 4, 6], "dog_r1": [1, 2], "night": [7]}
    for name, nums in labels.items():
        (ann / f"{name}.txt").write_text("".join(f"{x}\n" for x in nums))
    (ann / "README.txt").write_text("MIRFLICKR-25000 annotations\n")
    return root


@pytest.fixture
def mirflickr_root(tmp_path: Path) -> Path:
    return write_mirflickr(tmp_path / "mf")


def tiny_context(root: Path, seed: int = 0, n: int = 96, m: int = 3, with_attention: bool = True):
    """A Context over a hand-made feature store with a planted signal, for method tests.

    Labels (C=3) are shared within 'topics' of 8 consecutive images per split; neighbours are the
    other images of the same topic (so neighbours share labels); each label lights up channel k of
    the conv maps, but only in 'easy' images (every other one), so single-image methods see half
    the signal; the metadata terms are the topic id plus noise; multicnn scores are a noisy
    sigmoid of the planted channel. Returns (ctx, planted labels).
    """

    import polars as pl
    import torch

    from pipeline.config import Params
    from pipeline.methods import Context, neighbour_rows, term_matrix
    from pipeline.features.store import FeatureStore

    rng = np.random.default_rng(seed)
    D, H, W, C = 16, 2, 2, 3
    topic = np.arange(n) // 8
    topic_labels = (rng.random((topic.max() + 1, C)) < 0.45).astype(np.uint8)
    targets = topic_labels[topic]
    easy = np.arange(n) % 2 == 0
    maps = rng.normal(0, 0.3, (n, D, H, W)).astype(np.float32)
    for i in range(n):
        for k in np.flatnonzero(targets[i]):
            maps[i, k, rng.integers(H), rng.integers(W)] += 3.0 if easy[i] else 0.3
    scores = 1 / (1 + np.exp(-(maps[:, :C].max(axis=(2, 3)) - 1.0 + rng.normal(0, 0.3, (n, C)))))
    split = np.where((topic % 2) == 0, "train", "test")
    ids = [f"i{i}" for i in range(n)]
    store = FeatureStore.write(root / "features", maps, ids, split.tolist(), ["a", "b", "c"], scores=scores)

    src, dst, rank, score = [], [], [], []
    for i in range(n):
        mates = [j for j in range(n) if topic[j] == topic[i] and j != i]
        for r, j in enumerate(mates[:m], start=1):
            src.append(ids[i]), dst.append(ids[j]), rank.append(r), score.append(0.5)
    nb_table = pl.DataFrame({"image_id": src, "rank": rank, "neighbour_id": dst, "score": score},
                            schema={"image_id": pl.String, "rank": pl.Int32, "neighbour_id": pl.String, "score": pl.Float64})
    nb, nb_scores = neighbour_rows(nb_table, store, m)
    terms = [[f"topic{topic[i]}", f"noise{rng.integers(20)}"] for i in range(n)]
    meta = pl.DataFrame({"image_id": ids, "split": split, "terms": terms})

    attention = None
    if with_attention:
        from pipeline.features.store import AttentionStore

        beta = rng.random((n, C, H, W)).astype(np.float32)
        beta /= beta.sum(axis=(2, 3), keepdims=True)
        attention = AttentionStore.write(root / "attention", beta, np.log(scores / (1 - scores)), ["a", "b", "c"])

    p = Params()
    p.m = m
    for section in (p.insatten, p.mangonet):
        section.epochs, section.lr, section.batch_size, section.hidden = 20, 0.1, 12, 16
    ctx = Context(store=store, attention=attention, neighbours=nb, targets=targets, params=p,
                  device=torch.device("cpu"), neighbour_scores=nb_scores, multicnn=scores,
                  metadata=term_matrix(meta, store), m=m)
    return ctx, targets


@pytest.fixture(autouse=True)
def _exact_arithmetic():
    """Every test starts with fp32 (the library default): a stage run in-process sets the
    process-wide precision from its params (`precision: auto` is bf16 on CPUs with native bf16)."""
    import pipeline.device

    pipeline.device._precision = "fp32"
    yield
    pipeline.device._precision = "fp32"


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory):
    """A trained workspace: the project on the tiny configuration after `dvc repro` (built once per
    session; tests that change it work on a copy). Returns (folder, the repro's output)."""
    from tests.test_e2e import build_tiny_workspace

    work = tmp_path_factory.mktemp("tiny") / "project"
    return work, build_tiny_workspace(work)
