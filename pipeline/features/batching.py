"""Mini-batches gathered by row index from the memory-mapped stores (no image decoding)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import distributed
from pipeline.features.store import gather


def index_batches(rows: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                  shard: bool = False) -> Iterator[np.ndarray]:
    """Chunks of `rows` (shuffled deterministically by (seed, epoch) when `shuffle`).

    `shard` (training batches): under DDP each process yields only its share of every chunk
    (`pipeline.distributed.shard`), so the global batch stays `batch_size`; a last chunk with
    fewer rows than processes is skipped by all of them (no process may get an empty batch).
    Without DDP `shard` changes nothing.
    """
    order = np.random.default_rng([seed, epoch]).permutation(rows) if shuffle else rows
    world = distributed.world_size() if shard else 1
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        if world > 1:
            if len(chunk) < world:
                continue
            chunk = distributed.shard(chunk)
        yield chunk


def n_batches(n: int, batch_size: int, shard: bool = False) -> int:
    """How many batches `index_batches` yields for `n` rows (with the same `shard`)."""
    full, rest = divmod(n, batch_size)
    world = distributed.world_size() if shard else 1
    return full + int(rest >= world if world > 1 else rest > 0)


def gather_maps(maps: np.ndarray, rows: np.ndarray, pool: int = 1, mode: str = "avg") -> torch.Tensor:
    """Rows of a (N, K, H, W) store as float32 (*rows.shape, K, P), optionally pooled by `pool`.

    mode "avg" for features phi, "max" for attention maps beta (the paper max-pools the 14x14
    attention maps to 7x7 before co-attention, section 3.2).
    """
    x = torch.from_numpy(gather(maps, rows).astype(np.float32))  # (*R, K, H, W)
    lead, (k, h, w) = x.shape[:-3], x.shape[-3:]
    if pool > 1:
        x = x.reshape(-1, k, h, w)  # (R, K, H, W)
        x = F.max_pool2d(x, pool, ceil_mode=True) if mode == "max" else F.avg_pool2d(x, pool, ceil_mode=True)
        h, w = x.shape[-2:]
    return x.reshape(*lead, k, h * w)  # (*R, K, P)
