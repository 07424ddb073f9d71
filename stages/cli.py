"""The `mango` command: one sub-command per DVC stage, plus stand-alone tools.

Each stage lives in its own module under `stages/` and exposes `command`, a plain function with
Typer `Annotated` options. Modules import heavy libraries (torch, polars) inside `command`, so
`mango --help` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from pipeline.errors import MangoError

# (sub-command name, module under stages/, one-line help). Order is the pipeline's order.
COMMANDS: list[tuple[str, str, str]] = [
    ("synthesize", "synthesize", "Generate the embedded default dataset in the MIRFlickr-25k layout."),
    ("convert", "convert", "Write a real tagged picture collection (tuxpaint, openmoji, folders) in the MIRFlickr-25k layout."),
    ("prepare", "prepare", "Read a dataset through its adapter into images/labels/metadata Parquet."),
    ("crawl", "crawl", "Optional: fetch Flickr tags, sets/pools, title, description for photo ids (resumable)."),
    ("lemmatise", "lemmatise", "Tokenise, lemmatise and filter metadata into terms per image."),
    ("neighbours", "neighbours", "Top-k metadata neighbours within each split: exact Jaccard (optionally within groups) or semantic (captions)."),
    ("finetune", "finetune", "Train the backbone (any torchvision CNN; frozen or finetuned) with multi-label BCE (the Multi-CNN)."),
    ("features", "features", "Run every image through the backbone once into the feature store."),
    ("insatten", "insatten", "Train the instance-level attention module (eq. 1-3) on cached maps."),
    ("nodes", "nodes", "MangoNet's co-attended node features (eq. 4-9), once for every image and neighbour rank."),
    ("train", "train", "Train a registered neighbourhood method (MangoNet, eq. 4-11) on cached features."),
    ("evaluate", "evaluate", "Score one predictions file against a truth file (eight metrics)."),
    ("report", "report", "Score every method's predictions into reports/metrics.json and tables."),
    ("browse", "browse", "Write the static results page reports/browse/index.html (metrics, per-label AP, test images)."),
    ("figures", "figures", "Draw the paper's Fig. 5 (per-label AP) and Fig. 6 (co-attention maps)."),
    ("readme", "readme", "Regenerate the README's results table from reports/metrics.json."),
    ("annotate", "annotate", "Label new photos (paths + their raw tags) with the trained pipeline (MangoNet)."),
    ("metrics-diff", "metrics_diff", "CI gate: compare reports/metrics.json with a git revision; fail on drops."),
]

# Command groups: (name, module under stages/ exposing a Typer `app`, one-line help).
GROUPS: list[tuple[str, str, str]] = [
    ("bench", "bench", "Benchmarks: neighbour search at scale, GPU throughput."),
]

app = typer.Typer(
    name="mango",
    help="MangoNet: metadata-neighbourhood image annotation as a DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """MangoNet: metadata-neighbourhood image annotation as a DVC pipeline."""


def _register() -> None:
    for name, module, help_text in COMMANDS:
        mod = importlib.import_module(f"stages.{module}")
        app.command(name=name, help=help_text)(mod.command)
    for name, module, help_text in GROUPS:
        mod = importlib.import_module(f"stages.{module}")
        app.add_typer(mod.app, name=name, help=help_text)


_register()


def main() -> None:
    """Console entry point: user errors print one clear line and exit 2, without a traceback."""
    # under torchrun only rank 0 logs progress; the other ranks report warnings and errors
    level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING
    logging.basicConfig(level=level, format="[mango] %(message)s", stream=sys.stderr)
    try:
        app()
    except MangoError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
