"""Choose the default backbone on the validation split: for each candidate (arch, weights, input
size, output stride, trained blocks, epochs) run the pipeline up to InsAtten in a scratch copy
with `dataset.score_on: val` (the test images are dropped; a seeded share of train is scored in
their place), then report the stage times, Multi-CNN and InsAtten validation mAPC and InsAtten's
mean normalised attention entropy (1 = uniform) and grid.

    python scripts/select_backbone.py [--out reports/backbone_selection.json] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

from scratch import ROOT, merge, repro, scratch_copy, val_map

# name -> params overrides. The grid: the one ImageNet checkpoint that installs here at the
# input sizes and strides that give at least 7x7 maps, frozen or with its top blocks trained,
# and the old random-init default for reference.
CANDIDATES: dict[str, dict] = {
    "mnv2-112-os16-frozen": {"backbone": {"arch": "mobilenet_v2", "weights": "imagenet", "input_size": 112,
                                          "output_stride": 16}, "finetune": {"train_blocks": 0, "epochs": 20, "lr": 0.1}},
    "mnv2-112-os16-top3": {"backbone": {"arch": "mobilenet_v2", "weights": "imagenet", "input_size": 112,
                                        "output_stride": 16}, "finetune": {"train_blocks": 3, "epochs": 5, "lr": 0.01}},
    "mnv2-128-os16-frozen": {"backbone": {"arch": "mobilenet_v2", "weights": "imagenet", "input_size": 128,
                                          "output_stride": 16}, "finetune": {"train_blocks": 0, "epochs": 20, "lr": 0.1}},
    "mnv2-224-os32-frozen": {"backbone": {"arch": "mobilenet_v2", "weights": "imagenet", "input_size": 224,
                                          "output_stride": 0}, "finetune": {"train_blocks": 0, "epochs": 20, "lr": 0.1}},
    "mnv2-112-os16-frozen-d320": {"backbone": {"arch": "mobilenet_v2", "weights": "imagenet", "input_size": 112,
                                               "output_stride": 16, "node": "features.17.conv.3"},
                                  "finetune": {"train_blocks": 0, "epochs": 20, "lr": 0.1}},
    "mnv2-224-os32-frozen-d320": {"backbone": {"arch": "mobilenet_v2", "weights": "imagenet", "input_size": 224,
                                               "output_stride": 0, "node": "features.17.conv.3"},
                                  "finetune": {"train_blocks": 0, "epochs": 20, "lr": 0.1}},
    "resnet10-112-random (old default, 4x4)": {"backbone": {"arch": "resnet10", "weights": "none", "input_size": 112,
                                                           "output_stride": 0},
                                               "finetune": {"train_blocks": -1, "epochs": 5, "lr": 0.1}},
}


def beta_stats(work: Path) -> tuple[float, list[int]]:
    beta = np.load(work / "data/attention/beta.npy", mmap_mode="r")  # (N, C, H, W)
    p = np.asarray(beta, dtype=np.float64).reshape(beta.shape[0], beta.shape[1], -1)
    p = p / p.sum(-1, keepdims=True)
    ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(-1) / np.log(p.shape[-1])
    return float(ent.mean()), list(beta.shape[2:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"candidates (default: all): {', '.join(CANDIDATES)}")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "backbone_selection.json")
    args = ap.parse_args()
    names = args.names or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}; known: {', '.join(CANDIDATES)}")
    work = scratch_copy("mango-select-")
    base = yaml.safe_load((work / "params.yaml").read_text())
    base["dataset"]["score_on"] = "val"
    results = {}
    try:
        for name in names:
            (work / "params.yaml").write_text(yaml.safe_dump(merge(base, CANDIDATES[name]), sort_keys=False))
            wall, stages, _ = repro(work, "insatten")
            entropy, grid = beta_stats(work)
            results[name] = {"params": CANDIDATES[name], "wall_s": round(wall, 1),
                             "finetune_s": stages.get("finetune"), "features_s": stages.get("features"),
                             "insatten_s": stages.get("insatten"),
                             "multicnn_val_mAPC": round(val_map(work, "data/predictions/multicnn.parquet"), 4),
                             "insatten_val_mAPC": round(val_map(work, "data/predictions/insatten.parquet"), 4),
                             "beta_entropy": round(entropy, 4), "grid": grid}
            print(json.dumps({name: results[name]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| candidate | grid | finetune s | features s | insatten s | Multi-CNN val mAPC | InsAtten val mAPC | beta entropy |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['grid'][0]}x{r['grid'][1]} | {r['finetune_s']} | {r['features_s']} | {r['insatten_s']} | "
              f"{r['multicnn_val_mAPC']:.3f} | {r['insatten_val_mAPC']:.3f} | {r['beta_entropy']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
