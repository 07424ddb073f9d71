"""`mango bench head`: MangoNet's head (eq. 10-11 and the classifier) per training step at each
neighbourhood size m, beside its four matrix products alone: what the m = 3 / 7 / 15 stages cost
per batch once the node features come from the node store."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from stages.common import stage_timer


def command(
    m: Annotated[list[int], typer.Option("--m", min=1, help="Neighbourhood sizes (repeat the option).")] = [3, 7, 15],  # noqa: B006
    batch: Annotated[int, typer.Option(min=1, help="Batch size B (params mangonet.batch_size).")] = 64,
    dim: Annotated[int, typer.Option(min=1, help="Node feature width D (the default MobileNetV2: 1280).")] = 1280,
    labels: Annotated[int, typer.Option(min=1, help="Labels C (the embedded default: 24).")] = 24,
    hidden: Annotated[int, typer.Option(min=1, help="psi's hidden size (eq. 10: 512).")] = 512,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per measurement.")] = 30,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed warm-up steps per measurement.")] = 5,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU) | cpu | cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 where native) | fp32 | bf16, as params precision.")] = "auto",
) -> None:
    """Print a Markdown table: ms per head training step and per its matrix products, per m."""
    import torch

    from pipeline.bench.head import HeadShape, run
    from pipeline.device import resolve_device, uses_bf16

    with stage_timer("bench head"):
        dev = resolve_device(device, precision)
        shape = HeadShape(batch=batch, dim=dim, labels=labels, hidden=hidden)
        load = os.getloadavg()[0]
        rows = run(sorted(set(m)), shape, dev, steps, warmup)
    first = rows[0]
    lines = [
        f"MangoNet head, one training step (forward, backward, SGD) on node features: B = {batch}, D = {dim}, "
        f"C = {labels}, hidden {hidden}; {dev.type} ({torch.get_num_threads()} threads), "
        f"{'bf16 autocast' if uses_bf16(dev) else 'fp32'}; {steps} timed steps after {warmup} warm-up; "
        f"load average {load:.1f} at the start.",
        "",
        "| m | nodes | node rows | step (ms) | its four products alone (ms) | products GFLOP/s | rest (ms) | "
        f"step vs m = {first['m']} | products vs m = {first['m']} |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['m']} | {r['nodes']} | {r['rows']:,} | {r['step_ms']:.1f} | {r['products_ms']:.1f} | "
                     f"{r['products_gflops']:.0f} | {r['step_ms'] - r['products_ms']:.1f} | "
                     f"{r['step_ms'] / first['step_ms']:.2f}x | {r['products_ms'] / first['products_ms']:.2f}x |")
    if len(rows) > 1:
        last = rows[-1]
        per_node = (last["products_ms"] - first["products_ms"]) / (last["nodes"] - first["nodes"])
        lines += ["", f"Each node added costs {per_node:.2f} ms of matrix products per batch (psi and W forward, "
                  f"both weight gradients); from m = {first['m']} to m = {last['m']} a stage trains "
                  f"{last['products_ms'] - first['products_ms']:.1f} ms more per batch in products alone."]
    typer.echo("\n".join(lines))
