"""Same machine, same seed: a trainer's predicted scores are byte-identical; another seed changes them.

This is what the CI metric gate's tolerance rests on (README, "Metric diffs in CI"): on one machine
a rerun reproduces every score bit for bit, so any drift comes from the machine (threads, kernels,
bf16 autocast), not from unseeded randomness in the code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.methods import get_method
from tests.conftest import tiny_context

SMALL = {"epochs": 5, "lr": 0.1, "batch_size": 12, "hidden": 16}  # MangoNet takes batch_size/hidden from its shared section (tiny_context sets them)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scores(tmp_path, name: str, seed: int) -> np.ndarray:
    # The same hand-made data every time (tiny_context's own seed is the data's); only the training seed varies.
    ctx, _ = tiny_context(tmp_path / f"{name}-{seed}-{len(list(tmp_path.iterdir()))}")
    ctx.params.seed = seed
    ctx.params.methods = {name: dict(SMALL) if name == "ncnn" else {"epochs": SMALL["epochs"], "lr": SMALL["lr"]}}
    _, out, _ = get_method(name).train(ctx)
    return np.ascontiguousarray(out)


@pytest.mark.parametrize("name", ["ncnn", "mangonet"])
def test_same_seed_gives_byte_identical_scores(tmp_path, name):
    a, b = scores(tmp_path, name, 0), scores(tmp_path, name, 0)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes(), f"{name}: max |diff| {np.abs(a - b).max():.3g} between two runs with seed 0"
    c = scores(tmp_path, name, 1)
    assert a.tobytes() != c.tobytes(), f"{name}: seed 1 gave the same scores as seed 0 (is the seed used?)"
