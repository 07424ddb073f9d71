"""Choose settings on the validation split: a grid over params.yaml keys, one DVC stage per point.

Two modes. `--plan scripts/selection_plan.yaml` selects every method of the plan in pipeline
order (each method's best point applied before the next method is selected) and writes
`reports/selection.json`, which the report stage copies into `reports/evaluation.json` as
`selection.<method>`; apply the chosen settings to params.yaml by hand (they are printed).
`-G KEY=V1,V2 ...` runs one ad-hoc grid for one stage.

In a scratch copy with `dataset.score_on: val` (the test images are dropped; a seeded share of
train is scored in their place) `dvc repro STAGE` runs once per grid point, every other setting
as in params.yaml (upstream stages run once and are then cached), and the validation mAPC of the
stage's predictions is read, with the attention statistics they carry. The test split is never
scored. Writes a JSON report; the best point is printed, not applied.

    python scripts/select_settings.py --stage insatten --predictions insatten \\
        -G insatten.lr=0.05,0.2,0.5 -G insatten.epochs=6,15 --out /tmp/insatten_grid.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from scratch import ROOT, repro, scratch_copy, val_map


def set_dotted(params: dict, key: str, value) -> None:
    *path, last = key.split(".")
    node = params
    for part in path:
        node = node[part]
    if last not in node:
        raise SystemExit(f"-G {key}: not a key of params.yaml")
    node[last] = value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", type=Path, help="a selection plan (scripts/selection_plan.yaml): select every method in it")
    ap.add_argument("--only", default="", help="with --plan: a comma-separated subset of its methods")
    ap.add_argument("--markdown", action="store_true", help="print --out's grids as Markdown tables and stop")
    ap.add_argument("--stage", help="the DVC stage to run per grid point, e.g. train@mangonet")
    ap.add_argument("--predictions", help="method whose data/predictions/<method>.parquet is scored")
    ap.add_argument("-G", dest="grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="a params.yaml key and its values (YAML scalars)")
    ap.add_argument("--reference", action="append", default=[], metavar="STAGE:METHOD",
                    help="also score this stage's predictions once, e.g. train@ngcn:ngcn")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    if args.plan:
        return run_plan(args.plan, [m for m in args.only.split(",") if m], args.out)
    if not (args.stage and args.predictions and args.grid):
        ap.error("without --plan, --stage, --predictions and at least one -G are required")

    grid = {}
    for item in args.grid:
        key, _, values = item.partition("=")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    work = scratch_copy("mango-select-")
    base = yaml.safe_load((work / "params.yaml").read_text())
    base["dataset"]["score_on"] = "val"
    results: dict[str, dict] = {}

    try:
        for ref in args.reference:
            stage, _, method = ref.partition(":")
            results[f"{method} (reference)"] = score(work, stage, method, base)
            print(json.dumps({ref: results[f"{method} (reference)"]}), flush=True)
        for values in itertools.product(*grid.values()):
            params = yaml.safe_load(yaml.safe_dump(base))
            point = dict(zip(grid, values))
            for key, value in point.items():
                set_dotted(params, key, value)
            name = ", ".join(f"{k}={v}" for k, v in point.items())
            results[name] = {"point": point, **score(work, args.stage, args.predictions, params)}
            print(json.dumps({name: results[name]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    points = {k: r for k, r in results.items() if "point" in r}
    best = max(points, key=lambda k: points[k]["val_mAPC"])
    args.out.write_text(json.dumps({"stage": args.stage, "grid": grid, "grid_size": len(points), "best": best,
                                    "results": results}, indent=2) + "\n")
    print("| setting | val mAPC | beta entropy | alpha entropy | alpha_max x P | s |\n|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        a = r.get("attention") or {}
        print(f"| {name} | {r['val_mAPC']:.4f} | {a.get('beta_entropy', '-')} | {a.get('alpha_entropy', '-')} | "
              f"{a.get('alpha_max_ratio', '-')} | {r['seconds']} |")
    print(f"best on validation: {best} ({points[best]['val_mAPC']:.4f})")
    return 0


def score(work: Path, stage: str, method: str, params: dict) -> dict:
    """Run `stage` in the scratch copy with `params`; the validation mAPC of `method`'s predictions,
    the stage's seconds and the attention statistics the predictions carry (or None)."""
    from pipeline.data.tables import read_attention_stats

    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _, stages, _ = repro(work, stage)
    path = work / "data" / "predictions" / f"{method}.parquet"
    return {"val_mAPC": round(val_map(work, str(path.relative_to(work))), 4), "seconds": stages.get(stage),
            "attention": read_attention_stats(path)}


def markdown(report: dict) -> str:
    """Every selected method's grid: one row per method, the validation mAPC of each point, the best in bold."""
    out = []
    for method, sel in report["methods"].items():
        cells = []
        for i, r in enumerate(sel["results"]):
            point = ", ".join(str(v) for v in r["point"].values())
            mark = "**" if r["point"] == sel["chosen"] else ""
            cells.append(f"{mark}{point}: {r['val_mAPC']:.3f}{mark}")
        keys = ", ".join(sel["grid"]) or "w (inside the stage)"
        out.append(f"| {method} | {keys} | {sel['grid_size']} | " + "; ".join(cells) + " |")
    return "| method | grid over | points | validation mAPC per point (chosen in bold) |\n|---|---|---:|---|\n" + "\n".join(out)


def choose(rows: list[dict], max_alpha_entropy: float | None) -> tuple[int, dict | None]:
    """The index of the best row by validation mAPC (the first listed wins a tie) and, when the
    plan bounds the co-attention's alpha entropy, what the bound did.

    With a bound only the rows whose validation alpha entropy is at most it are eligible (an alpha
    that does not attend makes MangoNet compute its NGCN ablation, which has its own row); when no
    row is eligible the best of all is taken (the record's `eligible` is 0)."""
    def best_of(indices):
        return max(indices, key=lambda i: (rows[i]["val_mAPC"], -i))

    overall = best_of(range(len(rows)))
    if max_alpha_entropy is None:
        return overall, None
    eligible = [i for i, r in enumerate(rows)
                if (r.get("attention") or {}).get("alpha_entropy", 1.0) <= max_alpha_entropy]
    record = {"max_alpha_entropy": max_alpha_entropy, "eligible": len(eligible),
              "unconstrained": {"point": rows[overall]["point"], "val_mAPC": rows[overall]["val_mAPC"]}}
    return (best_of(eligible) if eligible else overall), record


def get_dotted(params: dict, key: str):
    node = params
    for part in key.split("."):
        node = node[part]
    return node


def run_plan(plan_path: Path, only: list[str], out: Path) -> int:
    """Select every method of the plan on the validation split, in order; write `out`."""
    plan = yaml.safe_load(plan_path.read_text())["methods"]
    unknown = sorted(set(only) - set(plan))
    if unknown:
        raise SystemExit(f"--only: {', '.join(unknown)} not in {plan_path} (has {', '.join(plan)})")
    report = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("methods", {})
    work = scratch_copy("mango-select-")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["dataset"]["score_on"] = "val"
    revision = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report["protocol"] = {"dataset": {"name": params["dataset"]["name"], "root": params["dataset"]["root"]},
                          "score_on": "val", "val_fraction": params["dataset"]["val_fraction"],
                          "split_seed": params["dataset"]["split_seed"], "seed": params["seed"],
                          "final_fit": "all of train (train + val), scored once on test"}
    try:
        for method, spec in plan.items():
            section, grid = spec["section"], spec.get("grid") or {}
            if method not in only and only:
                # not re-selected: its recorded choice (if any) still shapes what follows it
                chosen = report["methods"].get(method, {}).get("chosen") if grid else None
                for key, value in (chosen or {}).items():
                    set_dotted(params, f"{section}.{key}", value)
                continue
            rows = []
            for values in itertools.product(*grid.values()):
                point = dict(zip(grid, values))
                trial = yaml.safe_load(yaml.safe_dump(params))
                for key, value in point.items():
                    set_dotted(trial, f"{section}.{key}", value)
                row = {"point": point, **score(work, spec["stage"], spec.get("predictions", method), trial)}
                if not row["attention"]:
                    del row["attention"]
                if not grid:  # CNN Voting: the weight its stage chose
                    live = json.loads((work / "reports" / "live" / spec.get("predictions", method) / "metrics.json").read_text())["config"]
                    row["point"] = {"w": live["w"]}
                    row["inner_grid"] = len(live["validation"])
                rows.append(row)
                print(json.dumps({method: row}), flush=True)
            best, constraint = choose(rows, spec.get("max_alpha_entropy"))
            chosen = rows[best]["point"]
            if grid:
                for key, value in chosen.items():
                    set_dotted(params, f"{section}.{key}", value)
            report["methods"][method] = {
                "stage": spec["stage"], "section": section, "grid": grid, "revision": revision,
                "grid_size": len(rows) if grid else rows[0]["inner_grid"],
                "chosen": chosen, "val_mAPC": rows[best]["val_mAPC"], "results": rows}
            if constraint:
                report["methods"][method]["constraint"] = constraint
            else:
                report["methods"][method].pop("constraint", None)
            tmp = out.with_suffix(".tmp")  # after every method, atomically: an interruption keeps the done ones
            tmp.write_text(json.dumps(report, indent=2) + "\n")
            tmp.replace(out)
            where = (f"params.yaml {section}: " + ", ".join(f"{k}={get_dotted(params, f'{section}.{k}')}" for k in chosen)
                     if grid else "chosen inside its stage")
            print(f"{method}: chosen {chosen} (validation mAPC {rows[best]['val_mAPC']:.4f} of {len(rows)} runs); {where}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
