"""`mango features`: every image through the finetuned backbone once, into the feature store.

Also writes the Multi-CNN predictions (the finetuned backbone's own head) for the test split.
Under torchrun every process extracts its share of the images into the one store (rank 0 writes
the index, meta and predictions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import MetadataOption, ParamsOption, PreparedOption, stage_timer


def command(
    prepared: PreparedOption,
    metadata: MetadataOption,
    checkpoint: Annotated[Path, typer.Option(help="Backbone checkpoint written by `mango finetune`.")],
    out: Annotated[Path, typer.Option(help="Feature store folder to write.")],
    predictions: Annotated[Path, typer.Option(help="Multi-CNN predictions Parquet to write (test split).")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    from pipeline import distributed
    from pipeline.config import BackboneParams, load_params
    from pipeline.data.tables import load_annotated, write_predictions
    from pipeline.device import resolve_device
    from pipeline.errors import MangoError
    from pipeline.features.extract import extract_features
    from pipeline.models.backbone import backbone_from_params
    from pipeline.training.loop import load_checkpoint

    with stage_timer("features"):
        p = load_params(params)
        device = resolve_device(p.device, p.precision)
        data = load_annotated(prepared, metadata)
        ckpt = load_checkpoint(checkpoint)
        trained = BackboneParams(**ckpt["config"]["backbone"])
        if trained != p.backbone or ckpt.get("labels") != data.label_names:
            raise MangoError(f"{checkpoint}: trained as {trained} on labels {ckpt.get('labels')}, but params say "
                             f"{p.backbone} on {data.label_names}; re-run finetune")
        model = backbone_from_params(trained, len(data.label_names), weights="none")  # the checkpoint holds them
        model.load_state_dict(ckpt["model"])
        with distributed.session(device):  # under torchrun every process extracts its share
            with distributed.shared_atomic_dir(out) as tmp:
                scores = extract_features(model, data, p.backbone, p.features, device, tmp)
            if distributed.is_main():
                test = data.select("test")
                write_predictions(predictions, [data.image_ids[i] for i in test], scores[test], data.label_names)
