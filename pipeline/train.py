"""One training loop for every trainable model (backbone, InsAtten, MangoNet, baselines).

A model is trained from a `batches(epoch)` callable that yields `(inputs, target)` pairs, where
`inputs` is a tuple of tensors passed positionally to the model, which returns logits (or a tuple
starting with them); the loss is multi-label BCE on
the logits (section 3.2), the optimiser SGD with momentum. Per-epoch metrics go to dvclive.

Under torchrun (`pipeline.distributed.session`) the model is wrapped in DDP and each process
trains on its share of every global batch (`index_batches(..., shard=True)`, or a
DistributedSampler); only rank 0 logs and writes dvclive metrics.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from pipeline.progress import progress

from pipeline import distributed
from pipeline.config import TrainParams
from pipeline.device import autocast
from pipeline.errors import MangoError

log = logging.getLogger(__name__)

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


def _logits(output: torch.Tensor | tuple) -> torch.Tensor:
    """Models return logits (B, C), or a tuple whose first item is the logits (InsAtten: y, beta)."""
    return output[0] if isinstance(output, tuple) else output


def _live(live_dir: Path | None):
    if live_dir is None:
        return None
    from dvclive import Live

    return Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)


def fit(
    model: nn.Module,
    batches: Callable[[int], Iterable[Batch]],
    n_batches: int,
    cfg: TrainParams,
    device: torch.device,
    name: str,
    live_dir: Path | None = None,
) -> list[dict]:
    """Train `model` in place for `cfg.epochs` epochs; return the per-epoch history.

    The loss of a step is the mean BCE over the rows of the *global* batch: each process sums
    its rows' BCE (mean over labels) and divides by the global row count times 1/world, so that
    DDP's gradient average over the processes is exactly the gradient of that global mean, also
    when the processes hold unequal shares of a batch. In one process this is the plain mean.
    """
    if n_batches == 0:
        raise MangoError(f"{name}: no training example (is the training split empty?)")
    model.to(device)
    main, world = distributed.is_main(), distributed.world_size()
    trained = distributed.wrap(model, device)  # DDP under torchrun, else `model` itself
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    total_steps = max(1, cfg.epochs * n_batches)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    else:
        sched = None
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    live = _live(live_dir) if main else None
    history = []
    for epoch in range(cfg.epochs):
        trained.train()
        start, losses = time.perf_counter(), []
        bar = progress(batches(epoch), total=n_batches, desc=f"{name} epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       leave=False, disable=not main)
        for inputs, target in bar:
            inputs = tuple(x.to(device, non_blocking=True) for x in inputs)
            target = target.to(device, non_blocking=True).float()
            with autocast(device):
                logits = _logits(trained(*inputs))
            row_sum = loss_fn(logits.float(), target).mean(dim=1).sum()  # BCE summed over this process's rows
            stats = torch.stack([row_sum.detach(), torch.tensor(float(len(target)), device=device)])
            global_sum, global_rows = distributed.all_reduce_sum(stats).tolist()  # over all processes
            if not math.isfinite(global_sum):
                raise MangoError(f"{name}: the loss became {global_sum} in epoch {epoch + 1}; lower {name}.lr (now {cfg.lr})")
            loss = row_sum * (world / global_rows)  # DDP averages over the world: the global batch mean
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(global_sum / global_rows)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"],
                  "seconds": time.perf_counter() - start}
        history.append(record)
        if main:
            log.info("%s epoch %d/%d: loss %.4f (%.1f s)", name, epoch + 1, cfg.epochs, record["train_loss"], record["seconds"])
        if live is not None:
            live.log_metric("train_loss", record["train_loss"])
            live.log_metric("lr", record["lr"])
            live.next_step()
    if live is not None:
        live.end()
    return history


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], device: torch.device, n_batches: int | None = None,
            desc: str = "predict") -> np.ndarray:
    """Sigmoid scores (N, C) of `model` over `batches` of inputs, in order."""
    model.to(device).eval()
    out = []
    for inputs in progress(batches, total=n_batches, desc=desc, unit="batch", leave=False):
        inputs = tuple(x.to(device, non_blocking=True) for x in inputs)
        with autocast(device):
            logits = _logits(model(*inputs))
        out.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def save_checkpoint(path: Path, model: nn.Module, config: dict, **extra) -> None:
    """Checkpoint as a dict of plain types + state_dict: loads with torch.load(weights_only=True)."""
    from pipeline.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "config": config, **extra}, tmp)


def load_checkpoint(path: Path) -> dict:
    if not Path(path).is_file():
        raise MangoError(f"{path}: checkpoint not found (run the stage that writes it first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: pickle, zip and torch errors alike
        raise MangoError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from exc
