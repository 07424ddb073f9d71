"""The whole pipeline on a real human-tagged collection, over several training seeds.

    python scripts/real_collection.py ROOT [--name NAME] [--seeds 0 1 2] [-S key=value ...]

ROOT is a MIRFlickr-25k tree, e.g. written by `mango convert tuxpaint --out data/raw/tuxpaint`.
In a scratch copy of this repository (the workspace is not touched) it sets
`dataset.root=ROOT dataset.labels=all` plus the `-S` overrides (default: the pretrained
MobileNetV2 of the default), runs `dvc repro` once per seed, and writes
`reports/real/NAME/` with every seed's metrics, the mean ± std table of every row
(`results.md`) and the last seed's evaluation.json and results table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

from scratch import ROOT, repro, scratch_copy

METRICS = ("mAPC", "mAPO", "CP", "CR", "CF1", "OP", "OR", "OF1")


def set_key(params: dict, dotted: str, raw: str) -> None:
    *path, last = dotted.split(".")
    node = params
    for key in path:
        if not isinstance(node.get(key), dict):
            raise SystemExit(f"-S {dotted}: '{key}' is not a section of params.yaml")
        node = node[key]
    if last not in node:
        raise SystemExit(f"-S {dotted}: '{last}' is not a key of params.yaml (known: {', '.join(node)})")
    node[last] = yaml.safe_load(raw)


def spread_table(runs: dict[int, dict]) -> str:
    seeds = sorted(runs)
    methods = list(runs[seeds[0]])
    lines = [f"Mean ± std over seeds {', '.join(map(str, seeds))} (training seed; same data, split and neighbours).", "",
             "| Method | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for method in methods:
        cells = []
        for k in METRICS:
            v = np.array([runs[s][method][k] for s in seeds])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="a MIRFlickr-25k tree (mango convert ... --out ROOT)")
    ap.add_argument("--name", help="folder under reports/real/ (default: ROOT's name)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="params.yaml override, as with dvc exp run -S")
    args = ap.parse_args()
    root = args.root.resolve()
    if not (root / "mirflickr").is_dir():
        raise SystemExit(f"{root}: not a MIRFlickr-25k tree (no mirflickr/ folder); write one with `mango convert`")
    out = ROOT / "reports" / "real" / (args.name or root.name)
    work = scratch_copy("mango-real-")
    runs: dict[int, dict] = {}
    try:
        params = yaml.safe_load((work / "params.yaml").read_text())
        set_key(params, "dataset.root", str(root))
        set_key(params, "dataset.labels", "all")
        for item in args.overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"-S {item}: expected KEY=VALUE")
            set_key(params, key, value)
        for seed in args.seeds:
            params["seed"] = seed
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            wall, stages, _ = repro(work)
            runs[seed] = json.loads((work / "reports" / "metrics.json").read_text())
            print(f"seed {seed}: {wall:.0f} s; " + ", ".join(f"{m} {r['mAPC']:.3f}" for m, r in runs[seed].items()),
                  flush=True)
            out.mkdir(parents=True, exist_ok=True)  # after every seed, so an interrupted run keeps what it measured
            for name in ("evaluation.json", "results.md"):
                shutil.copy2(work / "reports" / name, out / name)
            (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            (out / "seeds.json").write_text(json.dumps({str(s): r for s, r in runs.items()}, indent=2) + "\n")
            (out / "spread.md").write_text(spread_table(runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(spread_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
