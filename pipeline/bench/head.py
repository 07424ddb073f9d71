"""The MangoNet head's training step at each neighbourhood size m (`mango bench head`).

What a MangoNet-family trainer runs in every batch once the node features come from the node
store: eq. 10-11 and the classifier (`MangoNet.head`), BCE, backward and the training loop's SGD
step, at the run's precision (bf16 autocast where the device has it). Beside it, for the same
batch, its four matrix products alone, which no exact implementation avoids: psi (D -> hidden)
and W (D -> D) forward on the B (m + 1) node rows, and the two weight gradients (the node features
are inputs, so no input gradient is needed). Their cost grows with the node count m + 1 and is
what sets the time ratio of the m = 15 and m = 3 stages.

Shapes: B batch, N = m + 1 nodes, D channels, C labels, H psi's hidden size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.device import autocast, uses_bf16


@dataclass(frozen=True)
class HeadShape:
    batch: int = 64  # B (params mangonet.batch_size)
    dim: int = 1280  # D (the default MobileNetV2's channels)
    labels: int = 24  # C (the embedded default world)
    hidden: int = 512  # H (eq. 10)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Milliseconds per call of `step`, over `steps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return 1000 * (time.perf_counter() - start) / steps


def head_step(m: int, shape: HeadShape, device: torch.device, seed: int = 0) -> tuple[Callable[[], None], nn.Module]:
    """One training step of MangoNet's head on (B, m+1, D) node features, as `fit` runs it; and the
    model it trains."""
    from pipeline.models.mangonet import MangoNet, MangoNetConfig
    from pipeline.training.loop import SGD

    g = torch.Generator().manual_seed(seed)
    model = MangoNet(MangoNetConfig(dim=shape.dim, num_labels=shape.labels, hidden=shape.hidden)).to(device).train()
    n = m + 1
    z = torch.randn(shape.batch, n, shape.dim, generator=g).to(device)  # (B, N, D) node features
    target_global = torch.randn(shape.batch, shape.dim, generator=g).to(device)  # (B, D)
    mask = torch.ones(shape.batch, n, dtype=torch.bool, device=device)  # (B, N)
    target = (torch.rand(shape.batch, shape.labels, generator=g) < 0.1).float().to(device)  # (B, C)
    opt = SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()

    def step() -> None:
        with autocast(device):
            logits = model.head(z, target_global, mask)
        loss = loss_fn(logits.float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, model


def products(m: int, shape: HeadShape, device: torch.device, seed: int = 0) -> Callable[[], None]:
    """The head step's four matrix products alone, at the dtype autocast gives them."""
    dtype = torch.bfloat16 if uses_bf16(device) else torch.float32
    g = torch.Generator().manual_seed(seed)
    rows = shape.batch * (m + 1)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=g).to(device=device, dtype=dtype)

    x, grad_h, grad_z = randn(rows, shape.dim), randn(rows, shape.hidden), randn(rows, shape.dim)
    psi, bias, weight = randn(shape.hidden, shape.dim), randn(shape.hidden), randn(shape.dim, shape.dim)

    def step() -> None:
        torch.addmm(bias, x, psi.t())  # psi forward        (R, H)
        grad_h.t() @ x  # psi's weight gradient                     (H, D)
        x @ weight.t()  # W forward (eq. 11)                        (R, D)
        grad_z.t() @ x  # W's weight gradient                       (D, D)

    return step


def flops(m: int, shape: HeadShape) -> float:
    """Floating-point operations of the four products for one batch."""
    rows = shape.batch * (m + 1)
    return 2 * 2 * rows * shape.dim * (shape.hidden + shape.dim)


def run(ms: list[int], shape: HeadShape, device: torch.device, steps: int = 30, warmup: int = 5) -> list[dict]:
    """Per m: ms per training step, ms of the four products alone, their GFLOP/s."""
    out = []
    for m in ms:
        step_ms = timed_ms(head_step(m, shape, device)[0], steps, warmup, device)
        prod_ms = timed_ms(products(m, shape, device), steps, warmup, device)
        out.append({"m": m, "nodes": m + 1, "rows": shape.batch * (m + 1), "step_ms": step_ms, "products_ms": prod_ms,
                    "products_gflops": flops(m, shape) / prod_ms / 1e6})
    return out
