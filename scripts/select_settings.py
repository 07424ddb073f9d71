"""Choose settings on the validation split: a grid over params.yaml keys, one DVC stage per point.

In a scratch copy with `dataset.score_on: val` (the test images are dropped; a seeded share of
train is scored in their place) `dvc repro STAGE` runs once per grid point, every other setting
as in params.yaml (upstream stages run once and are then cached), and the validation mAPC of the
stage's predictions is read, with the attention statistics they carry. The test split is never
scored. Writes a JSON report; the best point is printed, not applied.

    python scripts/select_settings.py --stage insatten --predictions insatten \\
        -G insatten.lr=0.05,0.2,0.5 -G insatten.epochs=6,15 --out reports/selection_insatten.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
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
    ap.add_argument("--stage", required=True, help="the DVC stage to run per grid point, e.g. train@mangonet")
    ap.add_argument("--predictions", required=True, help="method whose data/predictions/<method>.parquet is scored")
    ap.add_argument("-G", dest="grid", action="append", required=True, metavar="KEY=V1,V2",
                    help="a params.yaml key and its values (YAML scalars)")
    ap.add_argument("--reference", action="append", default=[], metavar="STAGE:METHOD",
                    help="also score this stage's predictions once, e.g. train@ngcn:ngcn")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipeline.data import read_attention_stats

    grid = {}
    for item in args.grid:
        key, _, values = item.partition("=")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    work = scratch_copy("mango-select-")
    base = yaml.safe_load((work / "params.yaml").read_text())
    base["dataset"]["score_on"] = "val"
    results: dict[str, dict] = {}

    def score(stage: str, method: str, params: dict) -> dict:
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _, stages, _ = repro(work, stage)
        path = work / "data" / "predictions" / f"{method}.parquet"
        return {"val_mAPC": round(val_map(work, str(path.relative_to(work))), 4), "seconds": stages.get(stage),
                "attention": read_attention_stats(path)}

    try:
        for ref in args.reference:
            stage, _, method = ref.partition(":")
            results[f"{method} (reference)"] = score(stage, method, base)
            print(json.dumps({ref: results[f"{method} (reference)"]}), flush=True)
        for values in itertools.product(*grid.values()):
            params = yaml.safe_load(yaml.safe_dump(base))
            point = dict(zip(grid, values))
            for key, value in point.items():
                set_dotted(params, key, value)
            name = ", ".join(f"{k}={v}" for k, v in point.items())
            results[name] = {"point": point, **score(args.stage, args.predictions, params)}
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


if __name__ == "__main__":
    sys.exit(main())
