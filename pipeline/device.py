"""Device choice (`device: auto` -> CUDA when present, else CPU) and the settings that go with it."""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np
import torch

from pipeline.errors import MangoError

log = logging.getLogger(__name__)


PRECISIONS = ("auto", "fp32", "bf16")
_precision = "fp32"  # set by resolve_device from params `precision` (the stages); the library default is exact


def resolve_device(name: str = "auto", precision: str | None = None) -> torch.device:
    """The device of `device: auto | cpu | cuda`; logs which one was chosen and why, and the
    arithmetic its trainers use (`precision`: auto | fp32 | bf16, see `autocast`).

    On CUDA it is `cuda:<LOCAL_RANK>`: under torchrun one GPU per process, else `cuda:0`.
    """
    global _precision
    if precision is not None:
        if precision not in PRECISIONS:
            raise MangoError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
        _precision = precision
    if name not in ("auto", "cpu", "cuda"):
        raise MangoError(f"device must be auto, cpu or cuda, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise MangoError("device: 'cuda' requested but torch sees no CUDA device (use 'auto' or 'cpu')")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda":
        # under torchrun each process takes the GPU of its LOCAL_RANK (0 without torchrun)
        index = int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            raise MangoError(f"LOCAL_RANK={index} but torch sees {torch.cuda.device_count()} CUDA device(s); "
                             f"start at most that many processes per machine")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
        log.info("device: %s (%s), %s", device, torch.cuda.get_device_name(device), _describe(device))
    else:
        log.info("device: cpu (%d threads)%s, %s", torch.get_num_threads(),
                 "" if name == "cpu" else "; torch sees no CUDA device", _describe(device))
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU with native bf16, or a CPU with
    AVX512-BF16 or AMX (oneDNN's bf16 kernels; elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch without the keyword
            return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def uses_bf16(device: torch.device) -> bool:
    """`precision: bf16` always; `auto` where the device has native bf16; `fp32` never."""
    return _precision == "bf16" or (_precision == "auto" and native_bf16(device))


def _describe(device: torch.device) -> str:
    if uses_bf16(device):
        return f"bf16 autocast (precision: {_precision})"
    return f"fp32 (precision: {_precision}{'' if _precision == 'fp32' else '; no native bf16'})"


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast (weights, optimiser state and the loss stay fp32) where `uses_bf16`, else a
    no-op: fp32, exact and portable."""
    if uses_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (trainers also seed their own samplers from `seed`)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
