"""`mango bench neighbours`: exact Jaccard top-k at NUS-WIDE scale, the project's search side by side
with the plain blocked sparse product and scikit-learn's brute force, checked against brute force."""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import Annotated

import typer

from stages.common import stage_timer


def command(
    n: Annotated[int, typer.Option("--n", min=2, help="Images (both splits together).")] = 270_000,
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours per image.")] = 15,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic tag sets.")] = 0,
    vocab: Annotated[int, typer.Option("--vocab", min=1, help="Tags in the vocabulary (Zipf-Mandelbrot popularity).")] = 3000,
    tags_per_image: Annotated[float, typer.Option("--tags-per-image", min=1.0, help="Mean tags per image (lognormal).")] = 10.0,
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.0, max=1.0, help="Share of images in the test split.")] = 0.5,
    blocked_budget: Annotated[float, typer.Option("--blocked-budget", min=1.0, help="Seconds the blocked product may take; beyond, it runs on fewer images and is extrapolated.")] = 600.0,
    blocked_pilot: Annotated[int, typer.Option("--blocked-pilot", min=2, help="Images of the blocked product's first, sizing run.")] = 20_000,
    sklearn_n: Annotated[int, typer.Option("--sklearn-n", min=2, help="Train images scikit-learn searches (extrapolated quadratically).")] = 2000,
    check: Annotated[int, typer.Option("--check", min=0, help="Sampled queries compared with brute force.")] = 300,
    pipeline: Annotated[bool, typer.Option("--pipeline/--no-pipeline", help="Also time search_neighbours end to end (frames in and out).")] = True,
    whole_command: Annotated[bool, typer.Option("--command/--no-command", help="Also time the whole `mango neighbours` command (Parquet in and out, process start included).")] = True,
) -> None:
    """Print a Markdown table: time, memory and exactness of each exact top-k method."""
    import numpy as np

    from pipeline.bench.runs import TagData, run_isolated
    from pipeline.neighbours.common import brute_force_topk

    data = TagData(n=n, vocab=vocab, tags_per_image=tags_per_image, test_fraction=test_fraction, seed=seed)
    kw = asdict(data)
    with stage_timer("bench neighbours"):
        X, split = data.build()
        splits = {s: int((split == s).sum()) for s in np.unique(split)}
        sample = np.sort(np.random.default_rng(seed + 2).choice(n, size=min(check, n), replace=False))
        load = os.getloadavg()[0]

        index = run_isolated("index_contender", data=kw, k=k, sample=sample)
        ref_idx, ref_score = brute_force_topk(X, k, queries=sample, candidates=lambda i: np.flatnonzero(split == split[i]))
        same = (np.array_equal(index["sample_idx"], ref_idx, equal_nan=False)
                and np.array_equal(index["sample_score"], ref_score, equal_nan=True))
        rows_same = int(sum(np.array_equal(a, b) and np.array_equal(c, d, equal_nan=True) for a, b, c, d in
                            zip(index["sample_idx"], ref_idx, index["sample_score"], ref_score)))
        full = run_isolated("pipeline_contender", data=kw, k=k) if pipeline else None
        cli = run_isolated("command_contender", data=kw, k=k, sample=sample) if whole_command else None
        cli_same = cli is None or (np.array_equal(cli["sample_idx"], ref_idx)
                                   and np.array_equal(cli["sample_score"], ref_score, equal_nan=True))

        pilot = run_isolated("blocked_contender", data=kw, k=k, rows=min(blocked_pilot, n))
        blocked, predicted = pilot, pilot["seconds"] * (n / pilot["n"]) ** 2
        if pilot["n"] < n:
            rows = n if predicted <= blocked_budget else int(pilot["n"] * math.sqrt(blocked_budget / pilot["seconds"]))
            if rows > pilot["n"]:
                blocked = run_isolated("blocked_contender", data=kw, k=k, rows=min(rows, n))
        blocked_at_n = blocked["seconds"] * (n / blocked["n"]) ** 2

        try:
            import sklearn  # noqa: F401  (a test extra)

            sk = run_isolated("sklearn_contender", data=kw, k=k, rows=min(sklearn_n, splits.get("train", 0)))
            sk_at_n = sum(sk["seconds"] * (s / sk["n"]) ** 2 for s in splits.values())
        except ImportError:
            sk = None

    def row(method, searched, seconds, how, res, ratio):
        if not res:
            mem = "-"
        elif res["rss_input_mb"] is None:  # a whole process: its peak is all its own
            mem = f"{res['rss_peak_mb']:,.0f} (the process)"
        else:
            mem = f"{res['rss_peak_mb']:,.0f} ({res['rss_peak_mb'] - res['rss_input_mb']:+,.0f})"
        return f"| {method} | {searched} | {seconds} | {how} | {mem} | {ratio} |"

    t_index = index["seconds"]
    lines = [
        f"Exact Jaccard top-{k}: n = {n:,} images ({', '.join(f'{s} {c:,}' for s, c in splits.items())}), vocabulary {vocab:,}, "
        f"{X.nnz / n:.2f} tags per image on average, {len(np.unique(X.indices))} tags used, seed {seed}; "
        f"{index['threads']} threads, load average {load:.1f} at the start.",
        "",
        "| method | images searched | time (s) | how | peak RSS MB (search's own) | time vs index |",
        "| --- | --- | --- | --- | --- | --- |",
        row("inverted index (`jaccard_topk`, default)", f"{n:,}", f"{t_index:.1f}",
            f"measured, both splits; CPU {index['cpu_seconds']:.1f} s; first call (JIT compile or cache load) "
            f"{index['first_call_s']:.1f} s more", index, "1.0x"),
    ]
    if full:
        lines.append(row("`search_neighbours` (frames in and out)", f"{n:,}", f"{full['seconds']:.1f}",
                         f"measured; CPU {full['cpu_seconds']:.1f} s", full, f"{full['seconds'] / t_index:.1f}x"))
    if cli:
        lines.append(row("`mango neighbours IN OUT` (the whole command)", f"{n:,}", f"{cli['seconds']:.1f}",
                         f"measured from launch to exit (`{' '.join(cli['command'])}`); CPU {cli['cpu_seconds']:.1f} s; Parquet in "
                         f"{cli['in_mb']:.1f} MB, out {cli['out_mb']:.1f} MB ({cli['rows_out']:,} rows)", cli,
                         f"{cli['seconds'] / t_index:.1f}x"))
    how = ("measured, both splits" if blocked["n"] == n else
           f"measured on the first {blocked['n']:,} images ({blocked['seconds']:.1f} s), extrapolated x(n/{blocked['n']:,})^2")
    lines.append(row("blocked sparse product (`jaccard_topk_blocked`)", f"{blocked['n']:,}", f"{blocked_at_n:.1f}", how,
                     blocked, f"{blocked_at_n / t_index:.1f}x"))
    if sk:
        lines.append(row("scikit-learn `NearestNeighbors(metric='jaccard')`, brute", f"{sk['n']:,}", f"{sk_at_n:,.0f}",
                         f"measured on {sk['n']:,} train images ({sk['seconds']:.1f} s), extrapolated quadratically per split",
                         sk, f"{sk_at_n / t_index:,.0f}x"))
    else:
        lines.append("| scikit-learn | - | - | skipped: scikit-learn is not installed (`pip install -e .[test]`) | - | - |")
    lines += [
        "",
        f"Exactness: {rows_same} of {sample.size} sampled queries identical to brute force (indices and float64 scores"
        f"{', all equal' if same else ', MISMATCH'})"
        + ("" if cli is None else f"; the whole command's rows for them {'identical too' if cli_same else 'DIFFER'}") + ".",
    ]
    typer.echo("\n".join(lines))
    if not (same and cli_same):
        raise typer.Exit(1)
