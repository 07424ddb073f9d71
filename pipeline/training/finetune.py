"""Backbone finetuning: the Multi-CNN (a frozen trunk, or the whole network, trained on the labels)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from pipeline.progress import progress

from pipeline import distributed
from pipeline.config import BackboneParams, FinetuneParams
from pipeline.data.tables import LabelledImages
from pipeline.errors import MangoError
from pipeline.features.images import ImageDataset, image_loader
from pipeline.features.extract import pooled_maps
from pipeline.models.backbone import Backbone, backbone_from_params
from pipeline.training.loop import fit

log = logging.getLogger(__name__)


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
    from pipeline.features.batching import index_batches, n_batches

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
