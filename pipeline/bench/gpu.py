"""Throughput of the pipeline's GPU work on synthetic tensors at the paper's shapes (`mango bench gpu`).

Six phases, each with the project's own modules and the settings the stages use (bf16 autocast
and channels_last on CUDA, the training loop's SGD with momentum, BCE):

    finetune     Backbone forward + backward + SGD step on (B, 3, S, S) images     (stage finetune)
    features     Backbone forward only, maps copied to host as float16              (stage features)
    insatten     InsAtten training step on (B, D, h, w) maps, h = w = S / 32        (stage insatten)
    nodes        compute_nodes on one block of 64 images (the stage's block, whatever B): each
                 image's 2K nodes (its K = k_max neighbour nodes, its target node for every
                 m <= K), eq. 4-9 with the pooling and the float16 store writes      (stage nodes;
                 timed on the CPU whatever the device, since that is where the stage runs)
    mangonet     MangoNet's head training step on (B, m+1, D) node features         (stage train@mangonet
                                                                                      and the family)
    coattention  MangoNet training step with eq. 4-9 in every batch, on (B, m+1, D, P)
                 maps, (B, m+1, C, P) attention maps and (B, m+1, C) confidences:
                 with a learnt temperature, so the backward pass runs through eq. 4-9: the
                 path of a learnt co-attention temperature (not in the estimate)

Warm-up steps are excluded; each phase reports images/s, ms per step and the peak GPU memory
(`torch.cuda.max_memory_allocated`; none for the CPU phase). A CUDA out-of-memory error ends that phase only and is
reported. The figures are compute only: JPEG decoding (finetune, features) and memmap reads
(the trainers, the nodes stage) come on top, and are what the DataLoader workers and the page
cache must keep up with.

Shapes: B batch, S input size, D channels, h w grid, P positions, m neighbours, C labels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from pipeline.config import CoAttentionConfig
from pipeline.device import autocast

log = logging.getLogger(__name__)

PHASES = ("finetune", "features", "insatten", "nodes", "mangonet", "coattention")
ESTIMATED = ("finetune", "features", "insatten", "nodes", "mangonet")  # the stages a default run has
CPU_PHASES = ("nodes",)  # stages that run on the CPU whatever the device: timed there, never divided by --gpus


@dataclass
class BenchConfig:
    """Shapes of the benchmark (defaults: the paper on NUS-WIDE) and the run sizes of the estimate."""

    arch: str = "resnet101"
    input_size: int = 448  # S: ResNet's stride 32 gives h = w = 14
    batch: int = 64
    m: int = 15
    k_max: int = 15  # K: neighbour ranks of the node store (params neighbours.k_max)
    labels: int = 81  # C
    insatten_hidden: int = 512
    mangonet_hidden: int = 512
    coatten_pool: int = 2  # the paper's 14x14 -> 7x7
    steps: int = 10
    warmup: int = 3
    # sizes of the whole-pipeline estimate: NUS-WIDE's official split (269,648 images)
    n_train: int = 161_789
    n_test: int = 107_859
    finetune_epochs: int = 10
    insatten_epochs: int = 10
    mangonet_epochs: int = 10
    graph_runs: int = 6  # MangoNet-family stages: mangonet, ngcn, mangonet_wo_gf, mangonet_m3/m7/m15
    gpus: int = 1  # GPUs of the estimate: every stage that runs under torchrun divides its time by them
    # the co-attention variant of params (mangonet.maps, temperature, ...); the coattention phase learns its temperature
    coattention: CoAttentionConfig = field(default_factory=lambda: CoAttentionConfig(maps="scores", temperature=0.1))

    def __post_init__(self) -> None:
        from pipeline.errors import MangoError
        from pipeline.models.backbone import check_arch

        check_arch(self.arch)
        for name in ("input_size", "batch", "m", "k_max", "labels", "insatten_hidden", "mangonet_hidden", "coatten_pool", "steps", "gpus"):
            if getattr(self, name) < 1:
                raise MangoError(f"bench gpu: --{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.input_size < 32:
            raise MangoError(f"bench gpu: --input-size must be >= 32 (ResNet stride), got {self.input_size}")
        if self.warmup < 0:
            raise MangoError(f"bench gpu: --warmup must be >= 0, got {self.warmup}")


@dataclass
class PhaseResult:
    status: str = "ok"  # ok | out of memory
    images_per_s: float | None = None
    ms_per_step: float | None = None
    peak_memory_gb: float | None = None  # CUDA only
    shapes: dict = field(default_factory=dict)


class Built(NamedTuple):
    """What a phase builder returns: the step to time, its input shapes and the images one step processes."""

    step: Callable[[], None]
    shapes: dict
    images: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], None], cfg: BenchConfig, device: torch.device, images: int) -> tuple[float, float]:
    """(images/s, ms/step) of `step`, which processes `images` images, over cfg.steps steps after
    cfg.warmup untimed ones."""
    for _ in range(cfg.warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    return images * cfg.steps / seconds, 1000 * seconds / cfg.steps


def _train_step(model: nn.Module, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """One SGD + BCE step of `model` on fixed inputs, as `pipeline.training.loop.fit` does it."""
    from pipeline.training.loop import SGD

    opt = SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()

    def step() -> None:
        with autocast(device):
            out = model(*inputs)
        logits = out[0] if isinstance(out, tuple) else out
        loss = loss_fn(logits.float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    return step


def map_shape(cfg: BenchConfig) -> tuple[int, int]:
    """(D, h) of the backbone's maps at input size S, measured on the model itself (one probe)."""
    return _map_shape(cfg.arch, cfg.input_size)


@functools.cache
def _map_shape(arch: str, input_size: int) -> tuple[int, int]:
    from pipeline.models.backbone import build_backbone

    model = build_backbone(arch, 1, "none").eval()
    with torch.no_grad():
        _, d, h, _ = model.maps(torch.zeros(1, 3, input_size, input_size)).shape
    return d, h


def _finetune(cfg: BenchConfig, device: torch.device) -> Built:
    from pipeline.models.backbone import build_backbone

    model = build_backbone(cfg.arch, cfg.labels, "none").to(device)
    x = torch.randn(cfg.batch, 3, cfg.input_size, cfg.input_size, device=device)  # (B, 3, S, S)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    target = (torch.rand(cfg.batch, cfg.labels, device=device) < 0.1).float()  # (B, C)
    return Built(_train_step(model, (x,), target, device), {"images": list(x.shape)}, cfg.batch)


def _features(cfg: BenchConfig, device: torch.device) -> Built:
    from pipeline.models.backbone import build_backbone

    model = build_backbone(cfg.arch, cfg.labels, "none").to(device).eval()
    x = torch.randn(cfg.batch, 3, cfg.input_size, cfg.input_size, device=device)  # (B, 3, S, S)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def step() -> None:
        with autocast(device):
            phi = model.maps(x)  # (B, D, h, w)
        phi = phi.float()
        model.head(phi.mean(dim=(2, 3)))  # (B, C) Multi-CNN scores
        phi.to(torch.float16).cpu()  # the store's rows, to host as float16

    d, h = map_shape(cfg)
    return Built(step, {"images": list(x.shape), "maps": [cfg.batch, d, h, h]}, cfg.batch)


def _insatten(cfg: BenchConfig, device: torch.device) -> Built:
    from pipeline.models.insatten import InsAtten

    d, h = map_shape(cfg)
    model = InsAtten(d, cfg.labels, cfg.insatten_hidden).to(device)
    phi = torch.randn(cfg.batch, d, h, h, device=device)  # (B, D, h, w), as gathered from the store
    target = (torch.rand(cfg.batch, cfg.labels, device=device) < 0.1).float()  # (B, C)
    return Built(_train_step(model, (phi,), target, device), {"maps": list(phi.shape)}, cfg.batch)


def _graph_shapes(cfg: BenchConfig) -> tuple[int, int]:
    """(D, P) of the co-attention inputs: the maps' channels and positions after the pool."""
    d, h = map_shape(cfg)
    side = -(-h // cfg.coatten_pool)  # ceil: the trainers pool with ceil_mode
    return d, side * side


def _nodes(cfg: BenchConfig, device: torch.device) -> Built:
    """`compute_nodes` itself, as the nodes stage runs it, on one block of images (its default block) whose
    K = k_max neighbours are other images of the block (so each is a neighbour K times, as on
    average in a collection): gather and pool phi and beta, eq. 4 and 7 weights, eq. 5 and 8
    softmax, eq. 6 and 9, and the float16 writes into a node store in a temporary folder."""
    import inspect
    import shutil
    import tempfile
    import weakref
    from pathlib import Path

    import numpy as np

    from pipeline.features.nodes import compute_nodes

    (d, h), n = map_shape(cfg), inspect.signature(compute_nodes).parameters["block"].default  # the stage's block
    k = min(cfg.k_max, n - 1)
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((n, d, h, h), dtype=np.float32).astype(np.float16)  # (n, D, h, w) as the feature store
    e = np.exp(rng.standard_normal((n, cfg.labels, h * h), dtype=np.float32))
    beta = (e / e.sum(-1, keepdims=True)).reshape(n, cfg.labels, h, h).astype(np.float16)  # softmax over positions
    y = rng.standard_normal((n, cfg.labels), dtype=np.float32)  # (n, C) InsAtten logits
    offsets = np.stack([rng.choice(n - 1, size=k, replace=False) + 1 for _ in range(n)])  # (n, K) distinct others
    neighbours = (np.arange(n)[:, None] + offsets) % n
    store = Path(tempfile.mkdtemp(prefix="mango-bench-nodes-"))

    def step() -> None:
        compute_nodes(maps, beta, y, neighbours, cfg.coattention, cfg.coatten_pool, store / "nodes")

    weakref.finalize(step, shutil.rmtree, store, ignore_errors=True)  # the store goes when the step does

    return Built(step, {"maps": list(maps.shape), "neighbours": list(neighbours.shape)}, n)  # the block, not --batch


def _mangonet(cfg: BenchConfig, device: torch.device) -> Built:
    from pipeline.models.mangonet import MangoNet, MangoNetConfig

    (d, _), n = _graph_shapes(cfg), cfg.m + 1
    model = MangoNet(MangoNetConfig(dim=d, num_labels=cfg.labels, hidden=cfg.mangonet_hidden)).to(device)
    z = torch.randn(cfg.batch, n, d, device=device)  # (B, N, D) node features from the node store
    target_global = torch.randn(cfg.batch, d, device=device)  # (B, D)
    mask = torch.ones(cfg.batch, n, dtype=torch.bool, device=device)  # (B, N)
    target = (torch.rand(cfg.batch, cfg.labels, device=device) < 0.1).float()  # (B, C)
    head = _HeadOnly(model)
    return Built(_train_step(head, (z, target_global, mask), target, device), {"nodes": list(z.shape)}, cfg.batch)


class _HeadOnly(nn.Module):
    """MangoNet's learnt part on node features, as the trainers fit it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, target_global: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.head(z, target_global, mask)


def _coattention(cfg: BenchConfig, device: torch.device) -> Built:
    from pipeline.models.mangonet import MangoNet, MangoNetConfig

    (d, p), n = _graph_shapes(cfg), cfg.m + 1
    coatten = dataclasses.replace(cfg.coattention, learn_temperature=True)  # the path that has no node store
    model = MangoNet(MangoNetConfig(dim=d, num_labels=cfg.labels, hidden=cfg.mangonet_hidden, coatten=coatten)).to(device)
    phi = torch.randn(cfg.batch, n, d, p, device=device)  # (B, N, D, P)
    beta = torch.rand(cfg.batch, n, cfg.labels, p, device=device).softmax(-1)  # (B, N, C, P)
    y = torch.randn(cfg.batch, n, cfg.labels, device=device)  # (B, N, C)
    mask = torch.ones(cfg.batch, n, dtype=torch.bool, device=device)  # (B, N)
    target = (torch.rand(cfg.batch, cfg.labels, device=device) < 0.1).float()  # (B, C)
    return Built(_train_step(model, (phi, beta, y, mask), target, device), {"phi": list(phi.shape), "beta": list(beta.shape)},
                 cfg.batch)


BUILDERS = {"finetune": _finetune, "features": _features, "insatten": _insatten, "nodes": _nodes,
            "mangonet": _mangonet, "coattention": _coattention}


def _out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def run_phase(name: str, cfg: BenchConfig, device: torch.device) -> PhaseResult:
    """Measure one phase (a CPU phase on the CPU); a CUDA out-of-memory error is reported, not raised."""
    result = PhaseResult()
    if name in CPU_PHASES:
        device = torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        step, result.shapes, images = BUILDERS[name](cfg, device)
        result.images_per_s, result.ms_per_step = _timed(step, cfg, device, images)
    except (RuntimeError, MemoryError) as exc:
        if device.type != "cuda" or not _out_of_memory(exc):
            raise
        result.status = "out of memory"
        log.warning("bench gpu: %s ran out of GPU memory at batch %d (%s)", name, cfg.batch, str(exc).splitlines()[0])
    finally:
        step = None  # free the phase's model, optimiser and tensors before the next one
        if device.type == "cuda":
            result.peak_memory_gb = torch.cuda.max_memory_allocated(device) / 1e9
            torch.cuda.empty_cache()
    log.info("bench gpu: %s %s", name, result.status if result.images_per_s is None else f"{result.images_per_s:.1f} images/s")
    return result


def estimate(cfg: BenchConfig, results: dict[str, PhaseResult]) -> dict[str, float | None]:
    """Seconds of GPU compute per stage of the whole pipeline at these rates (None where a phase failed).

    Inference passes (attention maps of every image, test predictions) are costed at the training
    rate of their model: an upper bound, since a forward pass is cheaper than a training step. The
    MangoNet family trains on the node store (the nodes stage once, then the head per run); the
    `coattention` entry is what the family would take with eq. 4-9 in every batch instead (a learnt
    temperature), outside the total.

    With `cfg.gpus` = N, the stages that split their work under torchrun (finetune, features,
    insatten, the MangoNet family: each process its share of every batch or of the images) take 1/N
    of the time; the nodes stage runs in one process on the CPU. Measure at the per-GPU batch (batch / N).
    """
    n_all = cfg.n_train + cfg.n_test

    def seconds(phase: str, images: float) -> float | None:
        rate = results[phase].images_per_s
        return images / rate / (1 if phase in CPU_PHASES else cfg.gpus) if rate else None

    out = {
        "finetune": seconds("finetune", cfg.finetune_epochs * cfg.n_train),
        "features": seconds("features", n_all),
        "insatten": seconds("insatten", cfg.insatten_epochs * cfg.n_train + n_all),
        "nodes": seconds("nodes", n_all),
        "mangonet": seconds("mangonet", cfg.graph_runs * (cfg.mangonet_epochs * cfg.n_train + cfg.n_test)),
    }
    out["total"] = None if any(v is None for v in out.values()) else sum(out.values())
    if "coattention" in results:
        out["coattention"] = seconds("coattention", cfg.graph_runs * (cfg.mangonet_epochs * cfg.n_train + cfg.n_test))
    return out


def run(cfg: BenchConfig, device: torch.device, phases: tuple[str, ...] = PHASES) -> dict:
    """Every phase, then the estimate; a JSON-ready dict."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    torch.manual_seed(0)
    results = {name: run_phase(name, cfg, device) for name in phases}
    info = {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "bf16_autocast": not isinstance(autocast(device), contextlib.nullcontext),
            "channels_last": device.type == "cuda", "torch": torch.__version__, "threads": torch.get_num_threads()}
    return {"device": info, "config": asdict(cfg), "phases": {k: asdict(v) for k, v in results.items()},
            "estimate_seconds": estimate(cfg, results) if set(ESTIMATED) <= set(phases) else None}
