"""`mango insatten`: train the instance-level attention module (eq. 1-3) on cached maps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import FeaturesOption, LiveOption, MetadataOption, ParamsOption, PreparedOption, stage_timer


def command(
    features: FeaturesOption,
    prepared: PreparedOption,
    metadata: MetadataOption,
    checkpoint: Annotated[Path, typer.Option(help="InsAtten checkpoint to write.")],
    out: Annotated[Path, typer.Option(help="Attention store folder to write (beta, y for every image).")],
    predictions: Annotated[Path, typer.Option(help="InsAtten predictions Parquet to write (test split).")],
    live: LiveOption = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    import dataclasses

    import numpy as np

    from pipeline import distributed
    from pipeline.training.insatten import beta_statistics, train_insatten, write_attention
    from pipeline.config import load_params
    from pipeline.data.tables import write_predictions
    from pipeline.device import resolve_device, seed_everything
    from pipeline.io import atomic_path
    from pipeline.training.loop import save_checkpoint
    from stages.common import open_store_with_labels

    with stage_timer("insatten"):
        p = load_params(params)
        device = resolve_device(p.device, p.precision)
        seed_everything(p.seed)
        store, targets = open_store_with_labels(features, prepared, metadata)
        with distributed.session(device):  # DDP under torchrun; a no-op otherwise
            model = train_insatten(store, targets, p.insatten, device, p.seed, live)
            if distributed.is_main():  # one writer; the other processes wait at the session's barrier
                save_checkpoint(checkpoint, model, dataclasses.asdict(p.insatten), labels=store.labels)
                test = store.index.filter(store.index["split"] == "test")
                with atomic_path(out, directory=True) as tmp:
                    probs = write_attention(model, store, device, tmp)
                    stats = beta_statistics(np.load(tmp / "beta.npy", mmap_mode="r"), test["row"].to_numpy())
                write_predictions(predictions, test["image_id"].to_list(), probs[test["row"].to_numpy()], store.labels,
                                  attention=stats)
