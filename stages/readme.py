"""`mango readme`: rewrite the README's results sections from reports/results.md (and, when
`make seeds` has written it, the seed-spread tables of reports/seed_spread.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

START, END = "<!-- results:start -->", "<!-- results:end -->"
SEEDS_START, SEEDS_END = "<!-- seeds:start -->", "<!-- seeds:end -->"


def replace_between(text: str, start: str, end: str, body: str) -> str:
    return text[: text.index(start) + len(start)] + "\n" + body.strip() + "\n" + text[text.index(end):]


def command(
    table: Annotated[Path, typer.Option(help="Markdown results written by `mango report`.")] = Path("reports/results.md"),
    readme: Annotated[Path, typer.Option(help="README to update between its results markers.")] = Path("README.md"),
    seeds: Annotated[Path, typer.Option(help="Seed-spread tables written by `make seeds` (skipped when absent).")] = Path("reports/seed_spread.md"),
) -> None:
    from pipeline.errors import MangoError
    from pipeline.io import atomic_path

    if not table.exists():
        raise MangoError(f"{table}: not found; run `dvc repro` first")
    text = readme.read_text()
    if START not in text or END not in text:
        raise MangoError(f"{readme}: no '{START}' ... '{END}' markers to write the results between")
    body = table.read_text().split("\n", 2)[2].strip()  # drop the "# Results" heading
    new = replace_between(text, START, END, body)
    if seeds.exists():
        if SEEDS_START not in text or SEEDS_END not in text:
            raise MangoError(f"{readme}: no '{SEEDS_START}' ... '{SEEDS_END}' markers for {seeds}")
        new = replace_between(new, SEEDS_START, SEEDS_END, seeds.read_text())
    if new == text:
        typer.echo(f"{readme}: results table already up to date")
        return
    with atomic_path(readme) as tmp:
        tmp.write_text(new)
    typer.echo(f"{readme}: results table updated from {table}")
