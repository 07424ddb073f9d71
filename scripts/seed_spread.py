"""MangoNet's margin over Multi-CNN and InsAtten (mAPC, OF1) across training seeds.

Runs the default pipeline in a scratch copy for each seed (the data and neighbours are shared;
finetune onwards re-runs), then prints mean and standard deviation of the margins, and the
label-frequency baseline next to Multi-CNN. Usage: python scripts/seed_spread.py [SEED ...]
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import yaml

from scratch import ROOT, repro, scratch_copy

METRICS = ("mAPC", "OF1")


def main() -> int:
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    work = scratch_copy("mango-seeds-")
    runs = {}
    try:
        for seed in seeds:
            params = yaml.safe_load((work / "params.yaml").read_text())
            params["seed"] = seed
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            wall, _, _ = repro(work)
            metrics = json.loads((work / "reports" / "metrics.json").read_text())
            prior = json.loads((work / "reports" / "evaluation.json").read_text())["methods"]["_label_frequency_baseline"]
            runs[seed] = {"metrics": metrics, "label_frequency_baseline": prior, "seconds": round(wall, 1)}
            print(f"seed {seed}: " + ", ".join(f"{t} mAPC {r['mAPC']:.3f} OF1 {r['OF1']:.3f}" for t, r in metrics.items())
                  + f" (label frequency mAPC {prior['mAPC']:.3f}; {wall:.0f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = ["| margin of MangoNet over | metric | mean | std | min | per seed |", "|---|---|---:|---:|---:|---|"]
    summary = {}
    for base in ("Multi-CNN", "InsAtten"):
        for k in METRICS:
            d = np.array([runs[s]["metrics"]["MangoNet"][k] - runs[s]["metrics"][base][k] for s in seeds])
            summary[f"{base}.{k}"] = {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0, "min": float(d.min())}
            lines.append(f"| {base} | {k} | {d.mean():+.3f} | {summary[f'{base}.{k}']['std']:.3f} | {d.min():+.3f} | "
                         + ", ".join(f"{x:+.3f}" for x in d) + " |")
    cnn = np.array([runs[s]["metrics"]["Multi-CNN"]["mAPC"] for s in seeds])
    prior = np.array([runs[s]["label_frequency_baseline"]["mAPC"] for s in seeds])
    lines.append("")
    lines.append(f"Multi-CNN mAPC {cnn.mean():.3f} ± {cnn.std(ddof=1) if len(seeds) > 1 else 0:.3f} vs label-frequency baseline {prior.mean():.3f}")
    print("\n".join(lines))
    out = ROOT / "reports" / "seed_spread.json"
    out.write_text(json.dumps({"seeds": seeds, "runs": runs, "margins": summary}, indent=2) + "\n")
    (ROOT / "reports" / "seed_spread.md").write_text("# MangoNet margins across training seeds\n\n" + "\n".join(lines) + "\n")
    print(f"written {out.relative_to(ROOT)} and reports/seed_spread.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
