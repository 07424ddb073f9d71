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


def resolve_device(name: str = "auto") -> torch.device:
    """The device of `device: auto | cpu | cuda`; logs which one was chosen and why.

    On CUDA it is `cuda:<LOCAL_RANK>`: under torchrun one GPU per process, else `cuda:0`.
    """
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
        log.info("device: %s (%s), bf16 autocast %s", device, torch.cuda.get_device_name(device),
                 "on" if _native_bf16() else "off (no native bf16: fp32)")
    else:
        log.info("device: cpu (%d threads)%s", torch.get_num_threads(),
                 "" if name == "cpu" else "; torch sees no CUDA device")
    return device


def _native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the keyword
        return torch.cuda.is_bf16_supported()


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device with native bf16; otherwise a no-op (fp32, exact and portable)."""
    if device.type == "cuda" and _native_bf16():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (trainers also seed their own samplers from `seed`)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
