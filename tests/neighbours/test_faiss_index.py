"""The shared FAISS helper of the KNN and TagProp baselines: exact cosine search, GPU only on CUDA
runs with a GPU build of FAISS (checked with a stand-in for the GPU calls, which this CPU build lacks)."""

from __future__ import annotations

import faiss
import numpy as np
import torch

from pipeline.neighbours import cosine as faiss_index
from pipeline.neighbours.cosine import CosineIndex, faiss_gpus


def brute_force(base: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    def unit(x):
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n > 0, n, 1)

    sim = unit(query) @ unit(base).T  # (Q, N)
    pos = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, pos, 1), pos


def test_cosine_index_is_exact_and_scale_free():
    rng = np.random.default_rng(0)
    base, query = rng.normal(size=(50, 8)), rng.normal(size=(7, 8))
    index = CosineIndex(8, torch.device("cpu"))
    index.add(base[:20].astype(np.float16))  # the store's dtype; added in blocks, positions follow add order
    index.add(base[20:] * 3.0)  # scale does not matter
    sim, pos = index.search(query, 5)
    ref_sim, ref_pos = brute_force(base, query, 5)
    assert index.ntotal == 50 and pos.dtype == np.int64
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_allclose(sim, ref_sim, atol=2e-3)  # float16 rows: ~1e-3


def test_gpu_only_for_cuda_runs_when_faiss_has_gpus(monkeypatch):
    moved = []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "resources", raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda res, gpu, index: moved.append((res, gpu)) or index, raising=False)
    assert faiss_gpus() == 2
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 4))
    cpu = CosineIndex(4, torch.device("cpu"))
    gpu = CosineIndex(4, torch.device("cuda", 1))
    assert (cpu.on, gpu.on) == ("cpu", "gpu 1") and moved == [("resources", 1)]
    for index in (cpu, gpu):
        index.add(base)
    np.testing.assert_array_equal(cpu.search(base[:3], 4)[1], gpu.search(base[:3], 4)[1])

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    assert CosineIndex(4, torch.device("cuda", 0)).on == "cpu"  # CUDA run, CPU-only FAISS: falls back


def test_cpu_build_without_gpu_symbols(monkeypatch):
    for name in ("get_num_gpus", "StandardGpuResources"):
        monkeypatch.delattr(faiss, name, raising=False)
    assert faiss_gpus() == 0
    assert CosineIndex(3, torch.device("cuda", 0), "knn").on == "cpu"
    assert faiss_index.unit_rows(np.zeros((2, 3))).tolist() == [[0.0] * 3] * 2  # zero rows stay zero
