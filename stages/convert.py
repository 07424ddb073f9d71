"""`mango convert`: a real human-tagged picture collection into the MIRFlickr-25k layout.

Stand-alone tool (not a dvc.yaml stage): its output is a dataset root for the pipeline,
`dvc exp run -S dataset.root=<out> -S dataset.labels=all`. Sources: `tuxpaint` (Debian
tuxpaint-stamps-default), `openmoji` (npm openmoji@17.0.0), `folders` (any folder tree of images
with optional `<stem>.txt` captions). See pipeline/data/datasets/convert.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import stage_timer


def command(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="tuxpaint | openmoji | folders.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: a MIRFlickr-25k tree (mirflickr/, "
                                      "mirflickr25k_annotations_v080/, SOURCE.txt); replaced atomically.")],
    root: Annotated[Path | None, typer.Option("--root", help="Where the collection is: tuxpaint default "
                                              "/usr/share/tuxpaint/stamps; openmoji: the npm package folder "
                                              "(default node_modules/openmoji); folders: required.")] = None,
    min_label_images: Annotated[int, typer.Option("--min-label-images", min=1, help="Labels with fewer images are dropped (and counted).")] = 20,
    size: Annotated[int, typer.Option("--size", min=16, max=4096, help="Side of the square RGB JPEGs written, in pixels.")] = 256,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    from pipeline.data.datasets.convert import convert

    with stage_timer("convert"):
        convert(source, out, root, min_label_images=min_label_images, size=size, progress=progress)
