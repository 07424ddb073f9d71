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

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from pipeline.progress import progress

from pipeline import distributed
from pipeline.config import TrainParams
from pipeline.device import autocast
from pipeline.errors import MangoError
from pipeline.features.batching import index_batches, n_batches

log = logging.getLogger(__name__)

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


def _logits(output: torch.Tensor | tuple) -> torch.Tensor:
    """Models return logits (B, C), or a tuple whose first item is the logits (InsAtten: y, beta)."""
    return output[0] if isinstance(output, tuple) else output


class SGD:
    """SGD with momentum and weight decay, and an optional per-step learning-rate factor.

    The update is torch's own (`torch.optim.sgd.sgd`, the kernel `torch.optim.SGD.step` runs), and
    the factor is applied as `LambdaLR` does (lr = base lr x factor(steps taken)), so parameters
    match `torch.optim.SGD` + `LambdaLR` exactly (tests/training/test_loop.py). What it leaves out
    is the `Optimizer` class, whose first use imports torch._dynamo: 1-2 s of start-up in every
    training process on this machine, ~15 s of a `dvc repro`.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float, weight_decay: float,
                 factor: Callable[[int], float] | None = None) -> None:
        self.params = list(params)
        self.base_lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.factor = factor
        self.steps = 0
        self.lr = lr * factor(0) if factor is not None else lr
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.sgd import sgd

        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        buffers = [self.buffers[i] for i in with_grad]
        sgd([self.params[i] for i in with_grad], [self.params[i].grad for i in with_grad], buffers,
            weight_decay=self.weight_decay, momentum=self.momentum, lr=self.lr, dampening=0.0,
            nesterov=False, maximize=False)
        for i, b in zip(with_grad, buffers):  # sgd creates a parameter's buffer on its first step
            self.buffers[i] = b
        self.steps += 1
        if self.factor is not None:
            self.lr = self.base_lr * self.factor(self.steps)


def cosine(total_steps: int) -> Callable[[int], float]:
    """The cosine learning-rate factor from 1 at step 0 to 0 at `total_steps`."""
    return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))


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
    total_steps = max(1, cfg.epochs * n_batches)
    opt = SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
              factor=cosine(total_steps) if cfg.schedule == "cosine" else None)
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
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(global_sum / global_rows)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": opt.lr,
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
def forward_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], device: torch.device,
                    n_batches: int | None = None, desc: str = "predict", *, exact: bool = False) -> Iterator:
    """The outputs of `model` in eval mode over `batches` of inputs, one per batch, in order: the one
    inference loop. Under the run's precision (bf16 autocast where chosen) unless `exact` (fp32:
    for the stored attention maps, which every later stage reads)."""
    model.to(device).eval()
    for inputs in progress(batches, total=n_batches, desc=desc, unit="batch", leave=False):
        inputs = tuple(x.to(device, non_blocking=True) for x in inputs)
        with contextlib.nullcontext() if exact else autocast(device):
            output = model(*inputs)
        yield output  # outside autocast: the caller's code runs at its own precision


def predict(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], device: torch.device, n_batches: int | None = None,
            desc: str = "predict") -> np.ndarray:
    """Sigmoid scores (N, C) of `model` over `batches` of inputs, in order."""
    out = [torch.sigmoid(_logits(output).float()).cpu().numpy() for output in forward_batches(model, batches, device, n_batches, desc)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


RowInputs = Callable[[np.ndarray], tuple[torch.Tensor, ...]]


def _rows_target(targets: np.ndarray | torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    if isinstance(targets, torch.Tensor):
        return targets[idx]
    return torch.from_numpy(np.asarray(targets[idx], dtype=np.float32))


def fit_rows(model: nn.Module, rows: np.ndarray, inputs: RowInputs, targets: np.ndarray | torch.Tensor, cfg: TrainParams,
             device: torch.device, name: str, live_dir: Path | None = None, *, seed: int) -> list[dict]:
    """`fit` on mini-batches of `rows`: each epoch shuffles them (seeded by seed and epoch), cuts
    batches of `cfg.batch_size` (each process its share under torchrun), and feeds
    `inputs(idx)` with target `targets[idx]` (0/1, any numeric dtype). The one training
    entry of every trainer on cached features."""
    def batches(epoch: int):
        for idx in index_batches(rows, cfg.batch_size, shuffle=True, seed=seed, epoch=epoch, shard=True):
            yield inputs(idx), _rows_target(targets, idx)

    return fit(model, batches, n_batches(len(rows), cfg.batch_size, shard=True), cfg, device, name, live_dir)


def predict_rows(model: nn.Module, rows: np.ndarray, inputs: RowInputs, device: torch.device, name: str,
                 batch_size: int = 256) -> np.ndarray:
    """`predict` over `rows` in order, `batch_size` rows at a time: sigmoid scores (len(rows), C)."""
    batches = (inputs(idx) for idx in index_batches(rows, batch_size, shuffle=False))
    return predict(model, batches, device, n_batches(len(rows), batch_size), desc=f"{name}: predict")


def fit_and_predict(model: nn.Module, name: str, cfg: TrainParams, device: torch.device, *, seed: int,
                    train_rows: np.ndarray, train_inputs: RowInputs, targets: np.ndarray | torch.Tensor,
                    test_rows: np.ndarray, test_inputs: RowInputs | None = None, live_dir: Path | None = None,
                    trained: nn.Module | None = None, predict_batch_size: int = 256) -> tuple[np.ndarray, list[dict]]:
    """Train `model` on `train_rows`, then score `test_rows`: (scores, history). The wrapper every
    trainer of a method goes through.

    `test_inputs` defaults to `train_inputs`; `trained`: the part of `model` that learns (default
    the whole model; SRN trains its f_sr on inputs that the full model also reads).
    """
    history = fit_rows(model if trained is None else trained, train_rows, train_inputs, targets, cfg, device, name,
                       live_dir, seed=seed)
    scores = predict_rows(model, test_rows, test_inputs or train_inputs, device, name, predict_batch_size)
    return scores.reshape(len(test_rows), targets.shape[1]), history  # (N_test, C), also for an empty test split


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
