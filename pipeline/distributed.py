"""torch.distributed (DDP) for the training stages, when a stage is launched under `torchrun`.

`torchrun --nproc-per-node N mango finetune ...` (or `insatten`, `train <method>`) starts N copies
of the stage with WORLD_SIZE, RANK and LOCAL_RANK in the environment. Each copy:

    with session(device):            # init_process_group: nccl on CUDA, gloo on CPU
        fit(...)                     # DDP-wrapped model, each rank trains on its share of every batch
        if is_main(): write outputs  # one writer: checkpoints, predictions, dvclive, logs
                                     # barrier, destroy_process_group on the way out

Without torchrun (or with one process) every helper here is a no-op, so the same code runs in one
process on the CPU or one GPU. The state lives in torch.distributed itself; nothing is global here.

Sharding keeps the *global* batch of a single-process run: each global batch of `batch_size`
rows is split between the ranks (rank r takes rows r, r + N, ...), and `fit` weighs each rank's
loss by its share of the global batch, so the averaged DDP gradient equals the single-process
gradient of that batch (see `pipeline.training.loop.fit`).
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pipeline.errors import MangoError

log = logging.getLogger(__name__)

# Ranks other than 0 may wait at the final barrier while rank 0 writes a large output (the
# feature store, the attention maps): the default collective timeout (10 min for NCCL) is too short.
TIMEOUT = datetime.timedelta(hours=6)


def launched() -> bool:
    """True when this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    """This process's GPU number on its machine under torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def active() -> bool:
    """True inside a `session` with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """The one process that logs, writes checkpoints, predictions and dvclive metrics."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join the torchrun process group for the block (a no-op without torchrun).

    nccl on CUDA, gloo on CPU. Ranks other than 0 log warnings only. On success all ranks meet at
    a barrier (so that no rank exits while rank 0 still writes), then the group is destroyed.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise MangoError("WORLD_SIZE > 1 (torchrun) but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {}
    if device.type == "cuda" and "device_id" in inspect.signature(dist.init_process_group).parameters:
        kwargs["device_id"] = device  # bind NCCL to this process's GPU (torch >= 2.3)
    dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
    root = logging.getLogger()
    level = root.level
    if dist.get_rank() != 0:
        root.setLevel(logging.WARNING)
    log.info("distributed: %d processes, backend %s", dist.get_world_size(), backend)
    try:
        yield
        dist.barrier()
    finally:
        root.setLevel(level)
        dist.destroy_process_group()


@contextlib.contextmanager
def shared_atomic_dir(path: Path) -> Iterator[Path]:
    """`pipeline.io.atomic_path(path, directory=True)` that every process of a session writes into:
    rank 0 creates the temporary folder and tells the others its name; when all have finished
    (a barrier), rank 0 swaps it in. Without a session, the plain atomic folder."""
    from pipeline.io import atomic_path

    if not active():
        with atomic_path(path, directory=True) as tmp:
            yield tmp
        return
    cm = atomic_path(path, directory=True) if is_main() else None
    name = [str(cm.__enter__()) if cm is not None else None]
    dist.broadcast_object_list(name, src=0)
    try:
        yield Path(name[0])
        dist.barrier()  # every rank's share is written
    except BaseException as exc:
        if cm is not None:
            cm.__exit__(type(exc), exc, exc.__traceback__)
        raise
    if cm is not None:
        cm.__exit__(None, None, None)


def my_rows(n: int) -> np.ndarray:
    """This process's contiguous share of rows 0..n-1 (all of them without a session)."""
    return np.array_split(np.arange(n), world_size())[rank()]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel inside a session, else `model` itself.

    The wrapper shares the parameters of `model`: training it trains `model` in place, and
    callers keep using the plain module afterwards (prediction, checkpoints).
    """
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of `x` over the ranks (in place; `x` itself without a session)."""
    if active():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def shard(batch: np.ndarray) -> np.ndarray:
    """This rank's rows of one global batch: rows rank, rank + N, ... (all of it without a session)."""
    return batch[rank()::world_size()] if active() else batch


def per_rank_batch(batch_size: int, what: str) -> int:
    """The per-process batch that keeps the global batch `batch_size` (it must split evenly)."""
    n = world_size()
    if batch_size % n:
        raise MangoError(f"params: {what} = {batch_size} does not split over {n} processes; "
                         f"use a multiple of {n}")
    return batch_size // n
