"""`mango readme`: rewrite the README's results section from reports/results.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

START, END = "<!-- results:start -->", "<!-- results:end -->"


def command(
    table: Annotated[Path, typer.Option(help="Markdown results written by `mango report`.")] = Path("reports/results.md"),
    readme: Annotated[Path, typer.Option(help="README to update between its results markers.")] = Path("README.md"),
) -> None:
    from pipeline.errors import MangoError
    from pipeline.io import atomic_path

    if not table.exists():
        raise MangoError(f"{table}: not found; run `dvc repro` first")
    text = readme.read_text()
    if START not in text or END not in text:
        raise MangoError(f"{readme}: no '{START}' ... '{END}' markers to write the results between")
    body = table.read_text().split("\n", 2)[2].strip()  # drop the "# Results" heading
    new = text[: text.index(START) + len(START)] + "\n" + body + "\n" + text[text.index(END):]
    if new == text:
        typer.echo(f"{readme}: results table already up to date")
        return
    with atomic_path(readme) as tmp:
        tmp.write_text(new)
    typer.echo(f"{readme}: results table updated from {table}")
