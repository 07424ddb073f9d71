"""`mango bench gpu`: images/s and peak GPU memory of finetune, features, InsAtten, the nodes stage
(on the CPU, where it runs), MangoNet's head and in-batch co-attention on synthetic tensors at the
paper's shapes, and the wall time they imply for all of NUS-WIDE.

On a CPU it runs at tiny shapes, e.g.
`mango bench gpu --device cpu --arch resnet18 --input-size 112 --batch 8 --steps 2`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import stage_timer


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def command(
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU) | cpu | cuda.")] = "auto",
    arch: Annotated[str, typer.Option(help="Backbone: resnet10/18/34/50/101/152 (paper: resnet101).")] = "resnet101",
    input_size: Annotated[int, typer.Option(help="Input side S in pixels (448 gives the paper's 14x14 maps).")] = 448,
    batch: Annotated[int, typer.Option(help="Batch size of every phase (paper: 64).")] = 64,
    m: Annotated[int, typer.Option(help="Neighbours per image in the MangoNet phases (paper: 3, 7, 15).")] = 15,
    k_max: Annotated[int | None, typer.Option(help="Neighbour ranks of the node store in the nodes phase [default: params neighbours.k_max].")] = None,
    labels: Annotated[int, typer.Option(help="Number of labels C (NUS-WIDE: 81).")] = 81,
    coatten_pool: Annotated[int, typer.Option(help="Pool factor of the maps before co-attention (paper: 2, 14x14 -> 7x7).")] = 2,
    hidden: Annotated[int, typer.Option(help="Hidden width of InsAtten's q(.) and MangoNet's psi (paper: 512).")] = 512,
    steps: Annotated[int, typer.Option(help="Timed steps per phase.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up steps per phase.")] = 3,
    n_train: Annotated[int, typer.Option(help="Training images of the estimate (NUS-WIDE official split).")] = 161_789,
    n_test: Annotated[int, typer.Option(help="Test images of the estimate (NUS-WIDE official split).")] = 107_859,
    finetune_epochs: Annotated[int | None, typer.Option(help="Epochs of the estimate [default: params finetune.epochs].")] = None,
    insatten_epochs: Annotated[int | None, typer.Option(help="Epochs of the estimate [default: params insatten.epochs].")] = None,
    mangonet_epochs: Annotated[int | None, typer.Option(help="Epochs of the estimate [default: params methods.mangonet.epochs].")] = None,
    graph_runs: Annotated[int, typer.Option(help="MangoNet-family stages in the estimate (mangonet, ngcn, w/o GF, m3/m7/m15).")] = 6,
    gpus: Annotated[int, typer.Option(help="GPUs of the estimate (torchrun --nproc-per-node); measure at the per-GPU --batch.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
    params: Annotated[Path, typer.Option("--params", help="params.yaml for the epochs (skipped when absent).")] = Path("params.yaml"),
) -> None:
    from pipeline.config import Params, family_params, load_params
    from pipeline.device import resolve_device
    from pipeline.bench.gpu import PHASES, BenchConfig, run
    from pipeline.io import write_json

    with stage_timer("bench gpu"):
        p = load_params(params) if params.exists() else Params()
        cfg = BenchConfig(arch=arch, input_size=input_size, batch=batch, m=m,
                          k_max=k_max if k_max is not None else p.neighbours.k_max, labels=labels, insatten_hidden=hidden,
                          mangonet_hidden=hidden, coatten_pool=coatten_pool, steps=steps, warmup=warmup,
                          n_train=n_train, n_test=n_test,
                          finetune_epochs=finetune_epochs if finetune_epochs is not None else p.finetune.epochs,
                          insatten_epochs=insatten_epochs if insatten_epochs is not None else p.insatten.epochs,
                          mangonet_epochs=mangonet_epochs if mangonet_epochs is not None else family_params(p, "mangonet").epochs,
                          graph_runs=graph_runs, gpus=gpus, coattention=p.mangonet.coattention())
        dev = resolve_device(device, "auto")  # bf16 autocast where the device has native bf16
        report = run(cfg, dev)

        info = report["device"]
        typer.echo(f"\n{info['name']} ({info['type']}), torch {info['torch']}, bf16 autocast "
                   f"{'on' if info['bf16_autocast'] else 'off'}, channels_last {'on' if info['channels_last'] else 'off'}; "
                   f"{cfg.arch} at {cfg.input_size} px, batch {cfg.batch}, m = {cfg.m}, C = {cfg.labels}; "
                   f"{cfg.steps} timed steps after {cfg.warmup} warm-up\n")
        typer.echo("| phase | images/s | ms/step | peak GPU memory (GB) | input shapes | status |")
        typer.echo("| --- | ---: | ---: | ---: | --- | --- |")
        for name in PHASES:
            r = report["phases"][name]
            shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in r["shapes"].items())
            typer.echo(f"| {name} | {_num(r['images_per_s'], '.1f')} | {_num(r['ms_per_step'], '.1f')} | "
                       f"{_num(r['peak_memory_gb'], '.2f')} | {shapes} | {r['status']} |")

        est, n_all = report["estimate_seconds"], cfg.n_train + cfg.n_test
        on = "one GPU" if cfg.gpus == 1 else f"{cfg.gpus} GPUs"
        typer.echo(f"\nEstimated compute for the whole pipeline on {on} and the CPU for the nodes stage "
                   f"({cfg.n_train:,} train + {cfg.n_test:,} test images; decoding and data loading not included):\n")
        typer.echo("| stage | images through the model | time |")
        typer.echo("| --- | ---: | ---: |")
        rows = [("finetune", f"{cfg.finetune_epochs} epochs x {cfg.n_train:,}", est["finetune"]),
                ("features", f"{n_all:,}", est["features"]),
                ("insatten", f"{cfg.insatten_epochs} epochs x {cfg.n_train:,} + {n_all:,}", est["insatten"]),
                (f"nodes ({2 * cfg.k_max} nodes per image, on the CPU)", f"{n_all:,}", est["nodes"]),
                (f"mangonet family ({cfg.graph_runs} runs, head on the node store, all at m = {cfg.m}: an upper bound)",
                 f"{cfg.graph_runs} x ({cfg.mangonet_epochs} epochs x {cfg.n_train:,} + {cfg.n_test:,})", est["mangonet"]),
                ("total", "", est["total"])]
        for stage, work, seconds in rows:
            typer.echo(f"| {stage} | {work} | {_duration(seconds)} |")
        typer.echo(f"\nWith eq. 4-9 in every batch instead (a learnt co-attention temperature: no node store), the "
                   f"mangonet family would take {_duration(est['coattention'])}.")
        if out is not None:
            write_json(report, out)
