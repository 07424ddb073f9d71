"""The `insatten` stage: train InsAtten (eq. 1-3) on cached maps, then write beta and y of every
image into the attention store (pipeline.features.store.AttentionStore; rows follow the feature
store). InsAtten's sigmoid(y) on the test split is the InsAtten row.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.features.batching import gather_maps, index_batches
from pipeline.config import InsAttenParams
from pipeline.models.insatten import InsAtten
from pipeline.features.store import AttentionStore, FeatureStore
from pipeline.training.loop import fit_rows, forward_batches

log = logging.getLogger(__name__)


def train_insatten(store: FeatureStore, targets: np.ndarray, cfg: InsAttenParams, device: torch.device, seed: int,
                   live_dir: Path | None = None) -> InsAtten:
    """Fit InsAtten on the training rows of the store; `targets` (N, C) follow store rows."""
    torch.manual_seed(seed)
    model = InsAtten(store.meta["dim"], len(store.labels), cfg.hidden)
    train_rows = store.index.filter(store.index["split"] == "train")["row"].to_numpy()

    def inputs(idx: np.ndarray) -> tuple[torch.Tensor]:
        phi = gather_maps(store.maps, idx)  # (B, D, P)
        return (phi.reshape(len(idx), store.meta["dim"], store.meta["height"], store.meta["width"]),)  # (B, D, H, W)

    fit_rows(model, train_rows, inputs, targets, cfg, device, "insatten", live_dir, seed=seed)
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
    beta = AttentionStore.allocate(out_dir, n, c, h, w)
    y = np.zeros((n, c), dtype=np.float32)
    batches = list(index_batches(np.arange(n), batch_size, shuffle=False))
    inputs = ((gather_maps(store.maps, idx).reshape(len(idx), -1, h, w),) for idx in batches)  # (B, D, H, W)
    outputs = forward_batches(model, inputs, device, len(batches), "insatten: attention maps", exact=True)
    for idx, (yb, bb) in zip(batches, outputs):  # (B, C), (B, C, P)
        y[idx] = yb.float().cpu().numpy()
        beta[idx] = bb.float().reshape(len(idx), c, h, w).cpu().numpy().astype(np.float16)
    beta.flush()
    del beta
    AttentionStore.finish(out_dir, y, store.labels, h, w)
    return 1.0 / (1.0 + np.exp(-y))
