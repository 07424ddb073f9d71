"""Backbone finetuning (the Multi-CNN) and feature extraction into the feature store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import torch
from pipeline.progress import progress

from pipeline import distributed
from pipeline.config import BackboneParams, FeaturesParams, FinetuneParams
from pipeline.data import LabelledImages
from pipeline.errors import MangoError
from pipeline.images import ImageDataset, image_loader
from pipeline.models.backbone import Backbone, build_backbone
from pipeline.train import fit

log = logging.getLogger(__name__)


def backbone_from_params(backbone: BackboneParams, num_labels: int, weights: str | None = None) -> Backbone:
    """The backbone that `backbone` params describe (weights: override, e.g. "none" before loading a checkpoint)."""
    return build_backbone(backbone.arch, num_labels, backbone.weights if weights is None else weights,
                          node=backbone.node, output_stride=backbone.output_stride)


def weights_used(backbone: BackboneParams) -> str:
    """What `backbone.weights` resolved to: the torchvision enum member (e.g. MobileNet_V2_Weights.IMAGENET1K_V1),
    the checkpoint path, or none."""
    from pipeline.models.backbone import imagenet_weights

    if backbone.weights == "none" or Path(backbone.weights).is_file():
        return backbone.weights
    return str(imagenet_weights(backbone.arch, backbone.weights))


def finetune(data: LabelledImages, backbone: BackboneParams, cfg: FinetuneParams, device: torch.device, seed: int,
             live_dir: Path | None = None) -> tuple[Backbone, list[dict]]:
    """Train the backbone with multi-label BCE on the training split (section 3.2, stage 1).

    `cfg.train_blocks` trunk blocks (from the top) and the head are trained, the rest is frozen;
    with 0 (a frozen trunk) the trunk runs once over the training images and the head trains on
    their pooled maps."""
    model = backbone_from_params(backbone, len(data.label_names))
    model.freeze(cfg.train_blocks)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    rows = data.select("train")
    if len(rows) == 0:
        raise MangoError("finetune: the training split is empty (check dataset.test_fraction)")
    if cfg.train_blocks == 0:
        return model, _fit_head(model, data, rows, backbone, cfg, device, seed, live_dir)
    ds = ImageDataset([data.paths[i] for i in rows], backbone.input_size, data.targets[rows], train=True)
    gen = torch.Generator().manual_seed(seed)
    if distributed.active():  # under torchrun: each process reads its own share, the global batch stays batch_size
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, shuffle=True, seed=seed)
        loader = image_loader(ds, distributed.per_rank_batch(cfg.batch_size, "finetune.batch_size"), shuffle=False,
                              num_workers=cfg.num_workers, device=device, generator=gen, sampler=sampler)
    else:
        sampler = None
        loader = image_loader(ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, device=device, generator=gen)

    def batches(epoch: int):
        if sampler is not None:
            sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every process
        return loader

    history = fit(model, batches, len(loader), cfg, device, "finetune", live_dir)
    return model, history


def _fit_head(model: Backbone, data: LabelledImages, rows: np.ndarray, backbone: BackboneParams, cfg: FinetuneParams,
              device: torch.device, seed: int, live_dir: Path | None) -> list[dict]:
    """Frozen trunk: pooled maps of the training images, computed once, then the head alone is fitted."""
    from pipeline.batching import index_batches, n_batches

    ds = ImageDataset([data.paths[i] for i in rows], backbone.input_size)
    loader = image_loader(ds, cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, device=device)
    pooled = torch.cat([pooled_maps(model, x, device).cpu() for (x,) in progress(loader, desc="finetune: frozen trunk",
                                                                            unit="batch")])  # (N_train, D)
    targets = torch.from_numpy(data.targets[rows].astype(np.float32))  # (N_train, C)
    order = np.arange(len(rows))

    def batches(epoch: int):
        for chunk in index_batches(order, cfg.batch_size, shuffle=True, seed=seed, epoch=epoch, shard=True):
            yield (pooled[chunk],), targets[chunk]

    return fit(model.fc, batches, n_batches(len(rows), cfg.batch_size, shard=True), cfg, device, "finetune", live_dir)


@torch.no_grad()
def pooled_maps(model: Backbone, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Global-average-pooled phi of a batch of images, in float32: (B, D)."""
    from pipeline.device import autocast

    model.to(device).eval()
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.to(memory_format=torch.channels_last)
    with autocast(device):
        phi = model.maps(x)  # (B, D, H, W)
    return phi.float().mean(dim=(2, 3))


@torch.no_grad()
def extract_features(model: Backbone, data: LabelledImages, backbone: BackboneParams, cfg: FeaturesParams,
                     device: torch.device, out_dir: Path) -> np.ndarray:
    """Write the feature store for every kept image into `out_dir`; return Multi-CNN scores (N, C).

    Under torchrun every process extracts its contiguous share of the images into the same
    memory-mapped arrays of `out_dir` (a folder all of them see, `distributed.shared_atomic_dir`):
    rank 0 creates the files, the others open them once they exist, and rank 0 writes the index
    and meta when all shares are in. Each image's maps do not depend on which process ran it (up to
    rounding where kernels depend on the batch size: cuDNN, bf16)."""
    from pipeline import distributed
    from pipeline.device import autocast

    model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # NHWC convolutions under bf16 autocast
    ds = ImageDataset(data.paths, backbone.input_size)
    n, c = len(ds), len(data.label_names)
    probe = model.maps(ds[0][0].unsqueeze(0).to(device))
    _, dim, h, w = probe.shape
    shapes = {"maps.npy": ((n, dim, h, w), np.float16), "pooled.npy": ((n, dim), np.float16),
              "scores.npy": ((n, c), np.float32)}
    if distributed.is_main():
        for name, (shape, dtype) in shapes.items():
            np.lib.format.open_memmap(out_dir / name, mode="w+", dtype=dtype, shape=shape).flush()
    distributed.barrier()  # the files exist before any other process opens them
    maps, pooled, scores = (np.load(out_dir / name, mmap_mode="r+") for name in shapes)
    rows = distributed.my_rows(n)
    if distributed.active():
        log.info("features: rank %d of %d extracts images %d-%d", distributed.rank(), distributed.world_size(),
                 rows[0] if len(rows) else 0, rows[-1] if len(rows) else -1)
    loader = image_loader(torch.utils.data.Subset(ds, rows.tolist()), cfg.batch_size, shuffle=False,
                          num_workers=cfg.num_workers, device=device)
    start = int(rows[0]) if len(rows) else 0
    for (x,) in progress(loader, desc="features", unit="batch", disable=not distributed.is_main()):
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.to(memory_format=torch.channels_last)
        with autocast(device):
            phi = model.maps(x)  # (B, D, H, W)
        phi = phi.float()
        g = phi.mean(dim=(2, 3))  # (B, D)
        logits = model.head(g)  # (B, C)
        end = start + len(x)
        maps[start:end] = phi.half().cpu().numpy()  # float16 on the device: half the copy, no host-side cast
        pooled[start:end] = g.half().cpu().numpy()
        scores[start:end] = torch.sigmoid(logits).cpu().numpy()
        start = end
    for arr in (maps, pooled, scores):
        arr.flush()
    del maps, pooled
    distributed.barrier()  # every share is on disk
    scores = np.array(np.load(out_dir / "scores.npy", mmap_mode="r"))
    if distributed.is_main():
        pl.DataFrame({"image_id": data.image_ids, "split": data.splits.tolist(),
                      "row": np.arange(n, dtype=np.int64)}).write_parquet(out_dir / "index.parquet")
        meta = {"n": n, "dim": dim, "height": h, "width": w, "dtype": "float16", "arch": backbone.arch,
                "weights": backbone.weights, "weights_used": weights_used(backbone), "input_size": backbone.input_size,
                "output_stride": backbone.output_stride, "node": backbone.node, "grid": [h, w], "labels": data.label_names,
                "processes": distributed.world_size()}
        (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        log.info("features: %d images -> maps (%d, %d, %d, %d) float16, %.1f MB", n, n, dim, h, w, n * dim * h * w * 2 / 1e6)
    return scores
