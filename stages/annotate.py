"""`mango annotate`: label new photos (with their owners' tags) with the trained pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    input: Annotated[Path, typer.Option("--input", help="Parquet of new photos: image_id (string), path (string: absolute, "
                                        "or relative to the working directory), tags (list of strings: raw tags).")],
    out: Annotated[Path, typer.Option("--out", help="Parquet to write: image_id, labels (the top-k labels above the "
                                      "threshold), one score column per label, neighbours (image ids).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels kept per photo (at most).")] = 3,
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=1.0, help="Least score of a kept label.")] = 0.5,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero when any photo was skipped.")] = False,
    workspace: Annotated[Path, typer.Option("--workspace", help="The trained pipeline's folder (its dvc.yaml says where "
                                            "every store and checkpoint is).")] = Path("."),
) -> None:
    from pipeline.annotate.annotator import annotate, read_photos
    from pipeline.annotate.workspace import Workspace
    from pipeline.io import write_parquet
    from stages.common import log

    ws = Workspace.from_dvc_yaml(workspace)
    ws.check()  # before the photos are read: an untrained workspace is the first thing to say
    photos = read_photos(input)
    result = annotate(photos, ws, top_k=top_k, threshold=threshold, source=str(input))
    write_parquet(result.table, out)
    log.info("annotate: %s -> %s", result.summary(), out)
    if strict and result.skipped:
        raise typer.Exit(1)
