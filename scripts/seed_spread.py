"""Every method's metrics as mean ± std over training seeds: `make seeds`.

In a scratch copy of this repository the default pipeline runs once per seed as a DVC experiment
(`dvc exp run -S seed=N`; the data, neighbours and the rest are shared, finetune onwards re-runs).
Writes reports/seed_spread.json (per method and metric: mean, std, the per-seed values; the
paired differences that matter; the attention statistics) and reports/seed_spread.md (the results
tables with ±, which `mango readme` copies into README). The CI gate derives its tolerances from
the standard deviations (gate.sigmas x std, params.yaml).

A difference between two methods is called real only when it has the same sign on every seed and
its mean exceeds twice the standard deviation of the per-seed differences; otherwise it is a tie.

    python scripts/seed_spread.py [SEED ...]        (default: 0 1 2)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np

from scratch import ROOT, env, scratch_copy

sys.path.insert(0, str(ROOT))
from pipeline.schemas import METRIC_KEYS  # noqa: E402
from pipeline.evaluation.report import ABLATION_ROWS, COMPARISON_ROWS  # noqa: E402

PAIRS = (("MangoNet", "NGCN"), ("MangoNet", "NCNN"), ("MangoNet", "Multi-CNN"), ("MangoNet", "InsAtten"),
         ("MangoNet-m15", "MangoNet-m3"))


def exp_run(work, seed: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-S", f"seed={seed}", "--name", f"seed-{seed}"],
                          cwd=work, env=env(work), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dvc exp run -S seed={seed} failed in {work}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return time.perf_counter() - start


def stats(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": round(float(a.mean()), 4), "std": round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 4),
            "values": [round(float(v), 4) for v in a]}


def verdict(d: np.ndarray) -> str:
    same_sign = bool(np.all(d > 0) or np.all(d < 0))
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return "real" if same_sign and abs(float(d.mean())) > 2 * sd else "tie (inside the seed noise)"


def table(spread: dict, rows: tuple[str, ...]) -> str:
    lines = ["| Method | " + " | ".join(METRIC_KEYS) + " |", "|---|" + "---:|" * len(METRIC_KEYS)]
    for title in (r for r in rows if r in spread):
        lines.append(f"| {title} | " + " | ".join(f"{spread[title][k]['mean']:.3f} ± {spread[title][k]['std']:.3f}"
                                                  for k in METRIC_KEYS) + " |")
    return "\n".join(lines)


def main() -> int:
    seeds = [int(s) for s in sys.argv[1:]] or [0, 1, 2]
    work = scratch_copy("mango-seeds-")
    runs = {}
    try:
        for seed in seeds:
            wall = exp_run(work, seed)
            metrics = json.loads((work / "reports" / "metrics.json").read_text())
            details = json.loads((work / "reports" / "evaluation.json").read_text())
            runs[seed] = {"metrics": metrics, "attention": details.get("attention", {}),
                          "label_frequency_baseline": details["methods"]["_label_frequency_baseline"]["mAPC"],
                          "seconds": round(wall, 1)}
            print(f"seed {seed} ({wall:.0f} s): " + ", ".join(f"{t} {r['mAPC']:.3f}" for t, r in metrics.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    titles = [t for t in runs[seeds[0]]["metrics"] if all(t in runs[s]["metrics"] for s in seeds)]
    spread = {t: {k: stats([runs[s]["metrics"][t][k] for s in seeds]) for k in METRIC_KEYS} for t in titles}
    differences = {}
    for a, b in PAIRS:
        if a in spread and b in spread:
            differences[f"{a} - {b}"] = {}
            for k in ("mAPC", "OF1"):
                d = np.array([runs[s]["metrics"][a][k] - runs[s]["metrics"][b][k] for s in seeds])
                differences[f"{a} - {b}"][k] = {**stats(d.tolist()), "verdict": verdict(d)}
    attention = {}
    for method in runs[seeds[0]]["attention"]:
        keys = [k for k in ("beta_entropy", "alpha_entropy", "alpha_max_ratio") if k in runs[seeds[0]]["attention"][method]]
        attention[method] = {k: stats([runs[s]["attention"][method][k] for s in seeds]) for k in keys}
    out = {"seeds": seeds, "rule": "real: same sign on every seed and |mean| > 2 std of the per-seed differences",
           "spread": spread, "differences": differences, "attention": attention, "runs": runs}
    (ROOT / "reports" / "seed_spread.json").write_text(json.dumps(out, indent=2) + "\n")

    n = len(seeds)
    md = [f"Mean ± standard deviation over {n} training seeds ({', '.join(map(str, seeds))}; `make seeds`, "
          "one DVC experiment per seed, the data and neighbours fixed).", "",
          "Comparison with the baselines:", "", table(spread, COMPARISON_ROWS), "",
          "Ablations:", "", table(spread, ABLATION_ROWS), "",
          f"Differences that matter (per-seed paired differences, mean ± std; {out['rule']}):", "",
          "| difference | mAPC | OF1 | verdict (mAPC / OF1) |", "|---|---:|---:|---|"]
    for name, d in differences.items():
        md.append(f"| {name} | {d['mAPC']['mean']:+.3f} ± {d['mAPC']['std']:.3f} | {d['OF1']['mean']:+.3f} ± "
                  f"{d['OF1']['std']:.3f} | {d['mAPC']['verdict']} / {d['OF1']['verdict']} |")
    if attention:
        md += ["", "Attention on the test images' nodes (mean normalised entropy, 1 = uniform):", "",
               "| method | beta entropy | alpha entropy | alpha_max x P |", "|---|---:|---:|---:|"]
        for method, st in attention.items():
            md.append(f"| {method} | " + " | ".join(f"{st[k]['mean']:.4f} ± {st[k]['std']:.4f}" if k in st else "-"
                                                   for k in ("beta_entropy", "alpha_entropy", "alpha_max_ratio")) + " |")
    prior = stats([runs[s]["label_frequency_baseline"] for s in seeds])
    md += ["", f"Label-frequency baseline mAPC {prior['mean']:.3f}. Wall time per seed: "
           + ", ".join(f"{runs[s]['seconds']:.0f} s" for s in seeds) + "."]
    (ROOT / "reports" / "seed_spread.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print("written reports/seed_spread.json and reports/seed_spread.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
