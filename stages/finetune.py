"""`mango finetune`: train the backbone with multi-label BCE (stage 1 of section 3.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import LiveOption, MetadataOption, ParamsOption, PreparedOption, stage_timer


def command(
    prepared: PreparedOption,
    metadata: MetadataOption,
    out: Annotated[Path, typer.Option(help="Backbone checkpoint to write.")],
    live: LiveOption = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    import dataclasses

    from pipeline import distributed
    from pipeline.config import load_params
    from pipeline.data.tables import load_annotated
    from pipeline.device import resolve_device, seed_everything
    from pipeline.training.finetune import finetune
    from pipeline.training.loop import save_checkpoint

    with stage_timer("finetune"):
        p = load_params(params)
        device = resolve_device(p.device, p.precision)
        seed_everything(p.seed)
        data = load_annotated(prepared, metadata)
        with distributed.session(device):  # DDP under torchrun; a no-op otherwise
            model, history = finetune(data, p.backbone, p.finetune, device, p.seed, live)
            if distributed.is_main():
                save_checkpoint(out, model, {"backbone": dataclasses.asdict(p.backbone),
                                             "finetune": dataclasses.asdict(p.finetune)},
                                labels=data.label_names, history=history)
