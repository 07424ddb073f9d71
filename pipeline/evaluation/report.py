"""Score every method's predictions with the one evaluator; write metrics, tables and details."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from pipeline.data.tables import LabelledImages, read_attention_stats, write_truth
from pipeline.errors import MangoError
from pipeline.methods import all_methods
from pipeline.evaluation.metrics import evaluate_files, evaluate_scores
from pipeline.schemas import METRIC_KEYS

log = logging.getLogger(__name__)


def label_prior_scores(data: LabelledImages) -> np.ndarray:
    """The label-frequency baseline: every test image scored by the labels' training frequency."""
    freq = data.targets[data.select("train")].mean(axis=0)  # (C,)
    return np.tile(freq, (len(data.select("test")), 1))


def predictions_in(folder: Path) -> list[Path]:
    """The predictions files of a folder, `<method>.parquet` for every registered method found there,
    in registry order; any other Parquet file there is an error (a typo would go unscored)."""
    if not Path(folder).is_dir():
        raise MangoError(f"{folder}: predictions folder not found (run the stages that write data/predictions/ first)")
    methods = all_methods()
    found = {p.stem: p for p in sorted(Path(folder).glob("*.parquet"))}
    unknown = sorted(set(found) - set(methods))
    if unknown:
        raise MangoError(f"{folder}: {', '.join(u + '.parquet' for u in unknown)} name no registered method "
                         f"(known: {', '.join(methods)})")
    missing = [name for name in methods if name not in found]
    if missing:
        log.warning("report: no predictions in %s for %s: those methods get no row", folder, ", ".join(missing))
    order = {title: i for i, title in enumerate(COMPARISON_ROWS + ABLATION_ROWS)}  # the paper's row order
    names = sorted(found, key=lambda name: (order.get(methods[name].title, len(order)), list(methods).index(name)))
    return [found[name] for name in names]


def score_predictions(data: LabelledImages, files: list[Path], top_k: int, threshold: float) -> tuple[dict, dict]:
    """(metrics by method title, details) for each predictions file, named predictions/<method>.parquet.

    Every file goes through `evaluate_files`, the code path of `mango evaluate`, against the
    test split's truth table.
    """
    methods = all_methods()
    metrics, details = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        truth_path = Path(tmp) / "truth_test.parquet"
        write_truth(truth_path, data, "test")
        evaluations = {}
        for path in files:
            name = Path(path).stem
            if name not in methods:
                raise MangoError(f"{path}: no registered method named '{name}' (known: {', '.join(methods)})")
            evaluations[name] = (path, evaluate_files(path, truth_path, top_k=top_k, threshold=threshold))
    for name, (path, ev) in evaluations.items():
        title = methods[name].title
        metrics[title] = {k: round(float(ev.metrics[k]), 4) for k in METRIC_KEYS}
        details[title] = {"method": name, "predictions": str(path), "per_label_ap": ev.per_label_ap,
                          "excluded_labels": ev.excluded_labels, "notes": ev.notes}
        stats = read_attention_stats(Path(path))
        if stats is not None:
            details[title]["attention"] = stats
        log.info("%-12s mAPC %.3f  mAPO %.3f  CF1 %.3f  OF1 %.3f", title, ev.metrics["mAPC"], ev.metrics["mAPO"],
                 ev.metrics["CF1"], ev.metrics["OF1"])
    truth = data.targets[data.select("test")]
    prior = evaluate_scores(label_prior_scores(data), truth, data.label_names, top_k=top_k, threshold=threshold)
    details["_label_frequency_baseline"] = {k: round(float(prior.metrics[k]), 4) for k in METRIC_KEYS}
    return metrics, details


# Row order of the paper's tables 1-3 (comparison) and 4-6 (ablations).
COMPARISON_ROWS = ("Meta+Logistic", "KNN", "Multi-CNN", "CNN Voting", "TagProp", "Link-CRF", "SRN", "NCNN",
                   "MangoNet-m3", "MangoNet-m7", "MangoNet-m15")
ABLATION_ROWS = ("NGCN", "MangoNet w/o GF", "InsAtten", "MangoNet")


def results_table(metrics: dict[str, dict[str, float]], rows: tuple[str, ...] | None = None,
                  published: dict[str, dict[str, float | None]] | None = None) -> str:
    """Markdown table, one row per method that ran (in `rows` order when given), the eight metrics
    with three decimals; with `published`, the paper's numbers in an italic row under each method."""
    order = [r for r in rows if r in metrics] if rows else list(metrics)
    lines = ["| Method | " + " | ".join(METRIC_KEYS) + " |", "|---|" + "---:|" * len(METRIC_KEYS)]
    for title in order:
        lines.append(f"| {title} | " + " | ".join(f"{metrics[title][k]:.3f}" for k in METRIC_KEYS) + " |")
        paper_row = (published or {}).get("MangoNet-m3" if title == "MangoNet" else title)
        if paper_row:
            cells = ["-" if paper_row[k] is None else f"*{paper_row[k]:.3f}*" for k in METRIC_KEYS]
            lines.append("| *paper* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(metrics: dict, details: dict, summary: dict, published: dict | None = None,
                     table_numbers: tuple[int, int] | None = None, selection: dict | None = None,
                     variants: dict | None = None) -> str:
    """reports/results.md: dataset header, the comparison and ablation tables in the paper's layout."""
    prior = details["_label_frequency_baseline"]
    excluded = sorted({lab for d in details.values() if isinstance(d, dict) and "excluded_labels" in d for lab in d["excluded_labels"]})
    first, second = table_numbers or ("1-3", "4-6")
    extra = [t for t in metrics if t not in COMPARISON_ROWS + ABLATION_ROWS]
    out = [
        "# Results",
        "",
        f"Dataset: **{summary['dataset']}**{' (synthetic, embedded default)' if summary.get('synthetic') else ''} "
        f"(`{summary['root']}`, labels: {summary['label_set']}); {summary['train']} train / {summary['test']} test images, "
        f"{summary['n_labels']} labels, vocabulary |T| = {summary['vocab_size']}."
        + ("" if published else " The paper's published numbers are shown only for its own datasets."),
        "",
        f"Comparison with the baselines (layout of the paper's table {first}):",
        "",
        results_table(metrics, COMPARISON_ROWS, published),
        "",
        f"Ablations (layout of the paper's table {second}; MangoNet here uses the top-level m):",
        "",
        results_table(metrics, ABLATION_ROWS, published),
    ]
    if extra:
        out += ["", "Other methods:", "", results_table(metrics, tuple(extra))]
    out += ["", f"Label-frequency baseline (every image scored by the training label frequencies): "
                f"mAPC {prior['mAPC']:.3f}, mAPO {prior['mAPO']:.3f}."]
    if excluded:
        out.append(f"Labels with no positive test image, excluded from mAPC, CP and CR: {', '.join(excluded)}.")
    attention = attention_summary(details)
    if attention:
        out += ["", "Attention on the test images' nodes (mean normalised entropy, 1 = uniform; alpha_max x P, "
                    "1 = uniform; P positions):", "",
                "| Method | beta entropy | alpha entropy | alpha_max x P | P |", "|---|---:|---:|---:|---:|"]
        for title, st in attention.items():
            cells = [f"{st[k]:.4f}" if k in st else "-" for k in ("beta_entropy", "alpha_entropy", "alpha_max_ratio")]
            out.append(f"| {title} | " + " | ".join(cells) + f" | {st['positions']} |")
    here = summary.get("root")
    if variants and variants.get("dataset", {}).get("root", here) != here:
        out += ["", f"(The co-attention variants of `{variants['dataset']['root']}` are not shown: they were "
                    f"scored on that dataset's test split, not on this one.)"]
        variants = None
    if variants:
        out += ["", f"Co-attention variants against NGCN on the test split (MangoNet at m = {variants['m']}, "
                    "`make coattention-variants`; the default was chosen on validation, not here):", "",
                "| variant | mAPC | OF1 | alpha entropy | alpha_max x P |", "|---|---:|---:|---:|---:|"]
        for name, v in variants["variants"].items():
            a = v.get("attention") or {}
            cells = [f"{a[k]:.3f}" if k in a else "-" for k in ("alpha_entropy", "alpha_max_ratio")]
            out.append(f"| {name} | {v['mAPC']:.3f} | {v['OF1']:.3f} | " + " | ".join(cells) + " |")
    if selection:
        titles = {d["method"]: title for title, d in details.items() if isinstance(d, dict) and "method" in d}
        source = next(iter(selection.values())).get("dataset", {}).get("root", here)
        where = "" if source == here else f" of `{source}` (another dataset; none were chosen on this one)"
        out += ["", f"Settings chosen on the validation split{where} (`make select`; the test split was not scored):", "",
                "| Method | chosen | grid size | val mAPC |", "|---|---|---:|---:|"]
        notes = []  # below the table: what a bound on the co-attention's alpha did
        for method, sel in selection.items():
            chosen = ", ".join(f"{k} {v}" for k, v in sel["chosen"].items())
            label = titles.get(method, "MangoNet's co-attention variant" if method == "coattention" else method)
            out.append(f"| {label} | {chosen} | {sel['grid_size']} | {sel['val_mAPC']:.3f} |")
            c = sel.get("constraint")
            if c:
                best = ", ".join(f"{k} {v}" for k, v in c["unconstrained"]["point"].items())
                kept = (f"{c['eligible']} of {sel['grid_size']} points attend (validation alpha entropy <= "
                        f"{c['max_alpha_entropy']})" + ("" if c["eligible"] else ", none: the best of all was taken"))
                notes += ["", f"{label}: only points whose alpha attends were eligible: {kept}. The best of all points, "
                              f"{best}, scored {c['unconstrained']['val_mAPC']:.3f} on validation."]
        out += notes
    return "\n".join(out) + "\n"


def read_variants(path: Path) -> dict:
    """`make coattention-variants`' reports/coattention_variants.json: {split, m, default, variants}."""
    try:
        data = json.loads(Path(path).read_text())
        for name, v in data["variants"].items():
            float(v["mAPC"]), float(v["OF1"])
        return {"split": data["split"], "dataset": data.get("dataset", {}), "m": int(data["m"]), "default": data["default"],
                "variants": data["variants"]}
    except FileNotFoundError:
        raise MangoError(f"{path}: not found; `make coattention-variants` writes it") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MangoError(f"{path}: not a co-attention variants report (missing or bad {exc})") from None


def read_selection(path: Path) -> dict[str, dict]:
    """method -> {chosen, grid_size, val_mAPC, grid, section[, constraint]} from `make select`'s
    reports/selection.json (constraint: the bound on the co-attention's alpha entropy and what it did)."""
    try:
        data = json.loads(Path(path).read_text())
        dataset = data.get("protocol", {}).get("dataset", {})
        return {method: {"chosen": s["chosen"], "grid_size": int(s["grid_size"]), "val_mAPC": float(s["val_mAPC"]),
                         "grid": s["grid"], "section": s["section"], "dataset": dataset,
                         **({"constraint": s["constraint"]} if s.get("constraint") else {})}
                for method, s in data["methods"].items()}
    except FileNotFoundError:
        raise MangoError(f"{path}: not found; `make select` writes it") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MangoError(f"{path}: not a selection report of `make select` (missing or bad {exc})") from None


def attention_summary(details: dict) -> dict[str, dict]:
    """Method title -> the attention statistics its predictions carry (InsAtten, co-attention models)."""
    return {title: d["attention"] for title, d in details.items() if isinstance(d, dict) and "attention" in d}
