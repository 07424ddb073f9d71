"""Exact cosine search with FAISS, on the GPU when the run is on CUDA and FAISS has GPUs, else CPU.

One helper for the visual-neighbour baselines (KNN, TagProp) and semantic search. The index is a flat inner-product
index over L2-normalised float32 rows, so a search is exact either way: the GPU index gives the
same neighbours as the CPU one (up to float rounding between near-equal similarities).
`faiss-cpu` has no GPU symbols; the optional `[gpu]` extra installs a GPU build of FAISS.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

FAISS_GPU_MAX_K = 1024  # FAISS's GPU flat search caps k: a larger k is searched on a CPU copy


def faiss_gpus() -> int:
    """How many GPUs FAISS can use: 0 for a CPU-only build (no `get_num_gpus`) or no device."""
    import faiss

    if not hasattr(faiss, "get_num_gpus") or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return faiss.get_num_gpus()


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of `x` (N, D) as contiguous float32 with L2 norm 1 (zero rows stay zero)."""
    import faiss

    x = np.array(x, dtype=np.float32, order="C", copy=True)  # (N, D), never a view of a memmap
    faiss.normalize_L2(x)
    return x


class CosineIndex:
    """Exact cosine-similarity search: `add` base rows, `search` queries; positions follow `add` order.

    Built on the GPU `device.index` when `device` is CUDA and FAISS reports GPUs, else on the CPU.
    Shapes: add (N, D); search (Q, D) -> similarities (Q, k) float32, positions (Q, k) int64.
    `normalise=False`: the caller passes rows that already have unit norm (float32).
    """

    def __init__(self, dim: int, device: torch.device | None = None, name: str = "faiss", *, normalise: bool = True):
        import faiss

        self.dim, self.normalise = dim, normalise
        self._resources = None  # GPU scratch memory; must outlive the index
        self._cpu = None  # a CPU copy, made when a search asks for more than FAISS_GPU_MAX_K
        index = faiss.IndexFlatIP(dim)
        gpu = (device.index or 0) if device is not None and device.type == "cuda" and faiss_gpus() > 0 else None
        if gpu is not None:
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, gpu, index)
        self.index, self.on = index, "cpu" if gpu is None else f"gpu {gpu}"
        log.info("%s: exact cosine index (FAISS flat IP) on %s", name, self.on)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def _rows(self, x: np.ndarray) -> np.ndarray:
        return unit_rows(x) if self.normalise else np.ascontiguousarray(x, dtype=np.float32)

    def add(self, x: np.ndarray) -> None:
        self.index.add(self._rows(x))
        self._cpu = None

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.index
        if self.on != "cpu" and k > FAISS_GPU_MAX_K:
            import faiss

            if self._cpu is None:
                self._cpu = faiss.index_gpu_to_cpu(self.index)
            index = self._cpu
        sim, pos = index.search(self._rows(x), k)  # (Q, k), (Q, k)
        return sim, pos.astype(np.int64)
