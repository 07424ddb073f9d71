"""`mango bench lemmatise`: the lemmatise step on NUS-WIDE-sized raw tags (~10 per image)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from stages.common import stage_timer


def command(
    n: Annotated[int, typer.Option("--n", min=1, help="Images.")] = 270_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic raw tags.")] = 0,
    tags_per_image: Annotated[float, typer.Option("--tags-per-image", min=1.0, help="Mean raw tags per image (lognormal).")] = 10.0,
    tail: Annotated[int, typer.Option("--tail", min=0, help="Rare made-up words in the tag vocabulary (distinct tokens to lemmatise).")] = 50_000,
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=1, help="lemmatise.vocab_size: terms kept.")] = 3000,
    old_tokeniser_items: Annotated[int, typer.Option("--old-tokeniser-items", min=0, help="Raw items on which the former per-row NLTK tokeniser is timed (extrapolated); 0 skips it.")] = 300_000,
) -> None:
    """Print a Markdown table: lemmatise's time and memory, and the tokeniser before and after."""
    from pipeline.bench.runs import run_isolated

    with stage_timer("bench lemmatise"):
        load = os.getloadavg()[0]
        r = run_isolated("lemmatise_contender", n=n, tags_per_image=tags_per_image, seed=seed, tail=tail,
                         vocab_size=vocab_size, old_tokeniser_items=old_tokeniser_items)
    st = r["stats"]
    scale = r["raw_items"] / max(r["tokenise_items"], 1)
    lines = [
        f"lemmatise: {n:,} images, {r['raw_items']:,} raw tags, {st['distinct_tokens']:,} distinct tokens lemmatised, "
        f"vocabulary {st['vocab_size']:,}, {st['images_out']:,} images kept; seed {seed}; load average {load:.1f} at the start.",
        "",
        "| step | time (s) | how |",
        "| --- | --- | --- |",
        f"| `lemmatise` (tokenise, lemmatise, stop words, vocabulary, joins) | {r['seconds']:.1f} | measured; CPU {r['cpu_seconds']:.1f} s; "
        f"peak RSS {r['rss_peak_mb']:,.0f} MB ({r['rss_peak_mb'] - r['rss_input_mb']:+,.0f} over the input) |",
        f"| WordNet reader load (once per process, before the above) | {r['wordnet_load_s']:.1f} | measured |",
        f"| tokenise: polars `str.extract_all` (now) | {r['tokenise_polars_s'] * scale:.1f} | "
        f"measured on {r['tokenise_items']:,} raw tags, scaled x{scale:.2f} |",
    ]
    if "tokenise_nltk_s" in r:
        lines.append(f"| tokenise: NLTK `RegexpTokenizer` per row (before) | {r['tokenise_nltk_s'] * scale:.1f} | "
                     f"measured on {r['tokenise_items']:,} raw tags, scaled x{scale:.2f} |")
    typer.echo("\n".join(lines))
