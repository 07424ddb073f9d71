"""The `insatten` stage: train InsAtten (eq. 1-3) on cached maps, then store beta and y for all.

    <root>/beta.npy  (N, C, H, W) float16  attention maps beta, memory-mapped
    <root>/y.npy     (N, C)       float32  confidence logits y
    <root>/meta.json

Rows follow the feature store. InsAtten's sigmoid(y) on the test split is the InsAtten row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pipeline.progress import progress

from pipeline.batching import gather_maps, index_batches, n_batches
from pipeline.config import InsAttenParams
from pipeline.errors import MangoError
from pipeline.models.insatten import InsAtten
from pipeline.store import FeatureStore
from pipeline.train import fit

log = logging.getLogger(__name__)


@dataclass
class AttentionStore:
    beta: np.ndarray  # (N, C, H, W) float16 memmap
    y: np.ndarray  # (N, C) float32

    @classmethod
    def open(cls, root: str | Path) -> AttentionStore:
        root = Path(root)
        for name in ("beta.npy", "y.npy"):
            if not (root / name).exists():
                raise MangoError(f"{root}: no {name}; run the insatten stage first")
        return cls(beta=np.load(root / "beta.npy", mmap_mode="r"), y=np.load(root / "y.npy"))


def train_insatten(store: FeatureStore, targets: np.ndarray, cfg: InsAttenParams, device: torch.device, seed: int,
                   live_dir: Path | None = None) -> InsAtten:
    """Fit InsAtten on the training rows of the store; `targets` (N, C) follow store rows."""
    torch.manual_seed(seed)
    model = InsAtten(store.meta["dim"], len(store.labels), cfg.hidden)
    train_rows = store.index.filter(store.index["split"] == "train")["row"].to_numpy()

    def batches(epoch: int):
        for idx in index_batches(train_rows, cfg.batch_size, shuffle=True, seed=seed, epoch=epoch, shard=True):
            phi = gather_maps(store.maps, idx)  # (B, D, P)
            phi = phi.reshape(len(idx), store.meta["dim"], store.meta["height"], store.meta["width"])  # (B, D, H, W)
            yield (phi,), torch.from_numpy(targets[idx].astype(np.float32))

    fit(model, batches, n_batches(len(train_rows), cfg.batch_size, shard=True), cfg, device, "insatten", live_dir)
    return model


def beta_statistics(beta: np.ndarray, rows: np.ndarray, batch_size: int = 512) -> dict:
    """Mean normalised entropy (1 = uniform) of the beta maps (N, C, H, W) of `rows`, per label map."""
    from pipeline.models.mangonet import normalised_entropy

    total, count = 0.0, 0
    for idx in index_batches(rows, batch_size, shuffle=False):
        b = torch.from_numpy(np.asarray(beta[idx], dtype=np.float32)).flatten(2)  # (B, C, P)
        total += float(normalised_entropy(b / b.sum(-1, keepdim=True)).sum())
        count += b.shape[0] * b.shape[1]
    return {"beta_entropy": round(total / max(count, 1), 4), "positions": int(np.prod(beta.shape[2:]))}


@torch.no_grad()
def write_attention(model: InsAtten, store: FeatureStore, device: torch.device, out_dir: Path, batch_size: int = 256) -> np.ndarray:
    """beta and y of every store row into `out_dir`; return sigmoid(y) (N, C)."""
    n, c = store.meta["n"], len(store.labels)
    h, w = store.meta["height"], store.meta["width"]
    beta = np.lib.format.open_memmap(out_dir / "beta.npy", mode="w+", dtype=np.float16, shape=(n, c, h, w))
    y = np.zeros((n, c), dtype=np.float32)
    model.to(device).eval()
    for idx in progress(list(index_batches(np.arange(n), batch_size, shuffle=False)), desc="insatten: attention maps", unit="batch"):
        phi = gather_maps(store.maps, idx).reshape(len(idx), -1, h, w).to(device)  # (B, D, H, W)
        yb, bb = model(phi)  # (B, C), (B, C, P)
        y[idx] = yb.float().cpu().numpy()
        beta[idx] = bb.float().reshape(len(idx), c, h, w).cpu().numpy().astype(np.float16)
    beta.flush()
    del beta
    np.save(out_dir / "y.npy", y)
    (out_dir / "meta.json").write_text(json.dumps({"n": n, "labels": store.labels, "height": h, "width": w}, indent=2) + "\n")
    return 1.0 / (1.0 + np.exp(-y))
