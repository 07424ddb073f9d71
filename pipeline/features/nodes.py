"""The node store: MangoNet's co-attended node features (eq. 4-9), computed once for every image.

With InsAtten frozen (stage-wise training, section 3.2) nothing in eq. 4-9 is learnt: the node
features are a function of the cached phi, beta, y and the neighbour list. So the `nodes` stage
computes them once and every MangoNet-family trainer (any m <= k_max) and its prediction read them.

    <root>/neighbour_z.npy  (N, K, D) float16  z^ of image i's rank-r neighbour j (eq. 4-6): depends on
                                                the pair only (w_j = y_i * y_j), not on m; 0 where missing
    <root>/target_z.npy     (N, K, D) float16  z^ of image i itself when it has m = r + 1 neighbours
                                                (eq. 7-9: w = y_i * prod of its first m neighbours' y)
    <root>/global.npy       (N, D)    float32  average-pooled phi(i): the target's global feature and
                                                the holistic node feature (NGCN)
    <root>/neighbour_alpha.npy (N, K, 2) float32  per node: normalised entropy of alpha, alpha_max * P
    <root>/target_alpha.npy    (N, K, 2) float32  the same for the target node at m = r + 1
    <root>/beta_entropy.npy (N,)      float32  mean normalised entropy of image i's C beta maps
    <root>/neighbours.npy   (N, K)    int64    the neighbour rows the nodes were computed for (-1 missing)
    <root>/meta.json        K, D, P, the co-attention settings, coatten_pool

Neighbour nodes are computed grouped by the neighbour image j, so each phi_j is read once
(N maps in all, not N * K). Missing neighbours (rank beyond what the search found) have z = 0
and are masked by the readers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.features.batching import gather_maps
from pipeline.errors import MangoError
from pipeline.models.mangonet import (
    CoAttentionConfig,
    attention_maps,
    coattention_shared,
    coattention_weights,
    normalised_entropy,
)
from pipeline.progress import progress

log = logging.getLogger(__name__)

FILES = ("neighbour_z.npy", "target_z.npy", "global.npy", "neighbour_alpha.npy", "target_alpha.npy",
         "beta_entropy.npy", "neighbours.npy", "meta.json")


def _confidence(y: np.ndarray, cfg: CoAttentionConfig) -> torch.Tensor:
    y = torch.from_numpy(np.asarray(y, dtype=np.float32))
    return torch.sigmoid(y) if cfg.weights == "prob" else y


def _alpha_stats(alpha: torch.Tensor) -> torch.Tensor:
    """(..., P) -> (..., 2): normalised entropy and alpha_max * P."""
    return torch.stack([normalised_entropy(alpha), alpha.amax(dim=-1) * alpha.shape[-1]], dim=-1)


@torch.no_grad()
def compute_nodes(maps: np.ndarray, beta: np.ndarray, y: np.ndarray, neighbours: np.ndarray, cfg: CoAttentionConfig,
                  pool: int, out: Path, block: int = 64, chunk: int = 256) -> dict:
    """Write the node store for all N images into the folder `out`.

    maps (N, D, H, W) and beta (N, C, H, W) memmaps, y (N, C) InsAtten logits, neighbours (N, K)
    store rows of each image's neighbours in rank order (-1 missing)."""
    n, k = neighbours.shape
    temperature = float(cfg.temperature)
    conf = _confidence(y, cfg)  # (N, C)
    probe = gather_maps(maps, np.array([0]), pool, "avg")  # (1, D, P)
    d, p = probe.shape[-2:]
    out.mkdir(parents=True, exist_ok=True)
    open_ = np.lib.format.open_memmap
    neighbour_z = open_(out / "neighbour_z.npy", mode="w+", dtype=np.float16, shape=(n, k, d))
    target_z = open_(out / "target_z.npy", mode="w+", dtype=np.float16, shape=(n, k, d))
    neighbour_alpha = np.zeros((n, k, 2), dtype=np.float32)
    target_alpha = np.zeros((n, k, 2), dtype=np.float32)
    global_ = np.zeros((n, d), dtype=np.float32)
    beta_entropy = np.zeros(n, dtype=np.float32)

    # pairs (i, r) -> j, grouped by j; images sorted by how often they are a neighbour, so the
    # padded (block, most pairs, P) alpha of a block wastes little
    src, rank = np.nonzero(neighbours >= 0)
    dst = neighbours[src, rank]
    order = np.argsort(dst, kind="stable")
    src, rank, dst = src[order], rank[order], dst[order]
    starts = np.searchsorted(dst, np.arange(n + 1))
    counts = np.diff(starts)
    by_count = np.argsort(-counts, kind="stable")
    blocks = [np.sort(by_count[i:i + block]) for i in range(0, n, block)]
    for rows in progress(blocks, desc="nodes", unit="block"):
        phi = gather_maps(maps, rows, pool, "avg")  # (B, D, P)
        b = gather_maps(beta, rows, pool, "max")  # (B, C, P)
        global_[rows] = phi.mean(dim=-1).numpy()
        beta_entropy[rows] = normalised_entropy(b).mean(dim=-1).numpy()
        # targets: eq. 7-9 for m = 1..K at once (each m its own product over the first m neighbours)
        nb = neighbours[rows]  # (B, K)
        mask = torch.from_numpy(nb >= 0)
        nb_conf = conf[np.where(nb >= 0, nb, 0)]  # (B, K, C)
        w_target = torch.stack([coattention_weights(conf[rows], nb_conf[:, :m], mask[:, :m], cfg.target)[:, 0]
                                for m in range(1, k + 1)], dim=1)  # (B, K, C)
        maps_b = attention_maps(b, cfg.maps)  # (B, C, P)
        alpha_t = coattention_shared(w_target, maps_b, temperature)  # (B, K, P)                eq. 8
        target_z[rows] = torch.bmm(alpha_t, phi.transpose(1, 2)).numpy().astype(np.float16)  # eq. 9: (B, K, D)
        target_alpha[rows] = _alpha_stats(alpha_t).numpy()
        # neighbours: every pair (i, r) whose neighbour j is in this block (eq. 4-6), `chunk` pairs
        # per image at a time (an image can be the neighbour of thousands)
        counts_b = counts[rows]
        width = int(counts_b.max()) if len(rows) else 0
        for c0 in range(0, width, chunk):
            c1 = min(width, c0 + chunk)
            pair_idx = np.full((len(rows), c1 - c0), -1, dtype=np.int64)  # (B, W) pair ids, -1 padding
            for a, j in enumerate(rows):
                have = np.arange(starts[j] + c0, min(starts[j + 1], starts[j] + c1))
                pair_idx[a, :len(have)] = have
            present = pair_idx >= 0
            if not present.any():
                continue
            safe = np.where(present, pair_idx, 0)
            w_pair = coattention_weights(conf[src[safe]].reshape(-1, conf.shape[1]), conf[dst[safe]].reshape(-1, 1, conf.shape[1]),
                                         torch.ones(safe.size, 1, dtype=torch.bool), cfg.target)[:, 1]  # (B*W, C) eq. 4
            alpha_n = coattention_shared(w_pair.reshape(len(rows), c1 - c0, -1), maps_b, temperature)  # (B, W, P) eq. 5
            z = torch.bmm(alpha_n, phi.transpose(1, 2))  # eq. 6 with phi_j shared by its W pairs: (B, W, D)
            stats = _alpha_stats(alpha_n)  # (B, W, 2)
            pres = torch.from_numpy(present)
            i_idx, r_idx = src[pair_idx[present]], rank[pair_idx[present]]
            order_w = np.lexsort((r_idx, i_idx))  # memmap writes in file order
            neighbour_z[i_idx[order_w], r_idx[order_w]] = z[pres].numpy().astype(np.float16)[order_w]
            neighbour_alpha[i_idx, r_idx] = stats[pres].numpy()
    for name, arr in (("neighbour_alpha.npy", neighbour_alpha), ("target_alpha.npy", target_alpha),
                      ("global.npy", global_), ("beta_entropy.npy", beta_entropy), ("neighbours.npy", neighbours)):
        np.save(out / name, arr)
    neighbour_z.flush(), target_z.flush()
    del neighbour_z, target_z
    meta = {"n": int(n), "k": int(k), "dim": int(d), "positions": int(p), "coatten_pool": int(pool),
            "coattention": dataclasses.asdict(cfg)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@dataclass
class NodeStore:
    root: Path
    neighbour_z: np.ndarray  # (N, K, D) float16 memmap
    target_z: np.ndarray  # (N, K, D) float16 memmap
    global_: np.ndarray  # (N, D) float32
    neighbour_alpha: np.ndarray  # (N, K, 2)
    target_alpha: np.ndarray  # (N, K, 2)
    beta_entropy: np.ndarray  # (N,)
    neighbours: np.ndarray  # (N, K) the neighbour rows the nodes were computed for
    meta: dict

    @classmethod
    def open(cls, root: str | Path) -> NodeStore:
        root = Path(root)
        missing = [f for f in FILES if not (root / f).exists()]
        if missing:
            raise MangoError(f"{root}: not a node store (missing {', '.join(missing)}); run the nodes stage first")
        load = lambda name, mmap=None: np.load(root / name, mmap_mode=mmap)  # noqa: E731
        return cls(root, load("neighbour_z.npy", "r"), load("target_z.npy", "r"), load("global.npy"),
                   load("neighbour_alpha.npy"), load("target_alpha.npy"), load("beta_entropy.npy"),
                   load("neighbours.npy"), json.loads((root / "meta.json").read_text()))

    def matches(self, cfg: CoAttentionConfig | None, pool: int, neighbours: np.ndarray, n: int, dim: int) -> str | None:
        """None when the store was computed for these inputs and settings, else why not: the same
        images and feature width, the same first m neighbour lists (`neighbours` (N, m)), the same
        pooling and, for co-attention nodes (`cfg` given), the same eq. 4-8 variant."""
        if (self.meta["n"], self.meta["dim"]) != (n, dim):
            return f"{self.meta['n']} images x {self.meta['dim']} channels (wanted {n} x {dim})"
        m = neighbours.shape[1]
        if m > self.meta["k"]:
            return f"node features for up to {self.meta['k']} neighbours (wanted m = {m})"
        if not np.array_equal(self.neighbours[:, :m], neighbours):
            return "other neighbour lists"
        want, have = {"coatten_pool": pool}, {"coatten_pool": self.meta["coatten_pool"]}
        if cfg is not None:
            want.update(dataclasses.asdict(cfg))
            have.update(self.meta["coattention"])
        diff = [f"{k} {have.get(k)} (wanted {v})" for k, v in want.items() if k != "learn_temperature" and have.get(k) != v]
        return ", ".join(diff) or None

    def inputs(self, rows: np.ndarray, neighbours: np.ndarray, m: int, holistic: bool = False) -> tuple[torch.Tensor, ...]:
        """MangoNet's head inputs for `rows` at neighbourhood size m: z (R, m+1, D), target_global
        (R, D), mask (R, m+1), float32. `neighbours` (N, >= m) store rows; holistic: NGCN's nodes."""
        if m > self.meta["k"]:
            raise MangoError(f"{self.root}: node features for up to {self.meta['k']} neighbours, m = {m}; "
                             f"re-run the nodes stage with neighbours.k_max >= m")
        nb = neighbours[rows, :m]  # (R, m)
        mask = np.concatenate([np.ones((len(rows), 1), dtype=bool), nb >= 0], axis=1)  # (R, m+1)
        target_global = torch.from_numpy(self.global_[rows])
        if holistic:
            nodes = np.concatenate([rows[:, None], np.where(nb >= 0, nb, rows[:, None])], axis=1)
            z = torch.from_numpy(self.global_[nodes])  # (R, m+1, D)
        else:
            z = torch.from_numpy(np.concatenate([np.asarray(self.target_z[rows, m - 1])[:, None],
                                                 np.asarray(self.neighbour_z[rows, :m])], axis=1).astype(np.float32))
        return z, target_global, torch.from_numpy(mask)

    def attention(self, rows: np.ndarray, neighbours: np.ndarray, m: int) -> dict:
        """The co-attention statistics of MangoNet's test nodes (target and present neighbours) at m."""
        nb = neighbours[rows, :m]
        present = nb >= 0
        t = self.target_alpha[rows, m - 1]  # (R, 2)
        a = self.neighbour_alpha[rows, :m][present]  # (nodes, 2)
        beta = np.concatenate([self.beta_entropy[rows], self.beta_entropy[nb[present]]])
        alpha = np.concatenate([t, a])
        return {"beta_entropy": round(float(beta.mean()), 4), "alpha_entropy": round(float(alpha[:, 0].mean()), 4),
                "alpha_max_ratio": round(float(alpha[:, 1].mean()), 4), "positions": int(self.meta["positions"]),
                "nodes": int(len(alpha))}
