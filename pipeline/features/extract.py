"""Feature extraction: every kept image through the finetuned backbone once, into the feature
store (pipeline.features.store.FeatureStore), also sharded over the processes of a torchrun."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline import distributed
from pipeline.config import BackboneParams, FeaturesParams
from pipeline.data.tables import LabelledImages
from pipeline.device import autocast
from pipeline.features.images import ImageDataset, image_loader
from pipeline.features.store import FeatureStore
from pipeline.models.backbone import Backbone, weights_used
from pipeline.progress import progress

log = logging.getLogger(__name__)


@torch.no_grad()
def pooled_maps(model: Backbone, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Global-average-pooled phi of a batch of images, in float32: (B, D)."""
    model.to(device).eval()
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.to(memory_format=torch.channels_last)
    with autocast(device):
        phi = model.maps(x)  # (B, D, H, W)
    return phi.float().mean(dim=(2, 3))


@torch.no_grad()
def image_features(model: Backbone, x: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of images (B, 3, S, S) through the backbone, as the feature store holds it: conv
    maps phi (B, D, H, W) float16, their average pool (B, D) float16, Multi-CNN sigmoid scores (B, C)
    float32. The model is in eval mode on `device`."""
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.to(memory_format=torch.channels_last)
    with autocast(device):
        phi = model.maps(x)  # (B, D, H, W)
    phi = phi.float()
    g = phi.mean(dim=(2, 3))  # (B, D)
    logits = model.head(g)  # (B, C)
    # float16 on the device: half the copy, no host-side cast
    return phi.half().cpu().numpy(), g.half().cpu().numpy(), torch.sigmoid(logits).cpu().numpy()


@torch.no_grad()
def extract_features(model: Backbone, data: LabelledImages, backbone: BackboneParams, cfg: FeaturesParams,
                     device: torch.device, out_dir: Path) -> np.ndarray:
    """Write the feature store for every kept image into `out_dir`; return Multi-CNN scores (N, C).

    Under torchrun every process extracts its contiguous share of the images into the same
    memory-mapped arrays of `out_dir` (a folder all of them see, `distributed.shared_atomic_dir`):
    rank 0 creates the files, the others open them once they exist, and rank 0 writes the index
    and meta when all shares are in. Each image's maps do not depend on which process ran it (up to
    rounding where kernels depend on the batch size: cuDNN, bf16)."""
    model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # NHWC convolutions under bf16 autocast
    ds = ImageDataset(data.paths, backbone.input_size)
    n, c = len(ds), len(data.label_names)
    probe = model.maps(ds[0][0].unsqueeze(0).to(device))
    _, dim, h, w = probe.shape
    if distributed.is_main():
        FeatureStore.allocate(out_dir, n, dim, h, w, c)
    distributed.barrier()  # the files exist before any other process opens them
    arrays = FeatureStore.open_arrays(out_dir)
    maps, pooled, scores = arrays["maps"], arrays["pooled"], arrays["scores"]
    rows = distributed.my_rows(n)
    if distributed.active():
        log.info("features: rank %d of %d extracts images %d-%d", distributed.rank(), distributed.world_size(),
                 rows[0] if len(rows) else 0, rows[-1] if len(rows) else -1)
    loader = image_loader(torch.utils.data.Subset(ds, rows.tolist()), cfg.batch_size, shuffle=False,
                          num_workers=cfg.num_workers, device=device)
    start = int(rows[0]) if len(rows) else 0
    for (x,) in progress(loader, desc="features", unit="batch", disable=not distributed.is_main()):
        phi, g, s = image_features(model, x, device)
        end = start + len(x)
        maps[start:end], pooled[start:end], scores[start:end] = phi, g, s
        start = end
    for arr in (maps, pooled, scores):
        arr.flush()
    del maps, pooled, scores, arrays
    distributed.barrier()  # every share is on disk
    scores = np.array(np.load(out_dir / "scores.npy", mmap_mode="r"))
    if distributed.is_main():
        meta = {"n": n, "dim": dim, "height": h, "width": w, "dtype": "float16", "arch": backbone.arch,
                "weights": backbone.weights, "weights_used": weights_used(backbone), "input_size": backbone.input_size,
                "output_stride": backbone.output_stride, "node": backbone.node, "grid": [h, w], "labels": data.label_names,
                "processes": distributed.world_size()}
        FeatureStore.finish(out_dir, data.image_ids, data.splits.tolist(), meta)
        log.info("features: %d images -> maps (%d, %d, %d, %d) float16, %.1f MB", n, n, dim, h, w, n * dim * h * w * 2 / 1e6)
    return scores
