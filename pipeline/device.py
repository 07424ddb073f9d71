"""Device choice (`device: auto` -> CUDA when present, else CPU) and the settings that go with it."""

from __future__ import annotations

import contextlib
import logging
import random

import numpy as np
import torch

from pipeline.errors import MangoError

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """The device of `device: auto | cpu | cuda`; logs which one was chosen and why."""
    if name not in ("auto", "cpu", "cuda"):
        raise MangoError(f"device must be auto, cpu or cuda, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise MangoError("device: 'cuda' requested but torch sees no CUDA device (use 'auto' or 'cpu')")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda":
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
