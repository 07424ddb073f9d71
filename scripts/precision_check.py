"""How much the arithmetic moves the metrics: the default pipeline with `precision: fp32` against
the committed metrics (computed with `precision: auto`, bf16 autocast on a CPU or GPU with native
bf16). `make precision-check`; writes reports/precision_check.json.

This is the difference a machine without native bf16 (where `auto` means fp32) would see; the
CI gate's floor (gate.tolerance) must cover it.
"""

from __future__ import annotations

import json
import shutil
import sys

import yaml

from scratch import ROOT, repro, scratch_copy

GATED = ("mAPC", "OF1")


def main() -> int:
    work = scratch_copy("mango-precision-")
    try:
        committed = json.loads((work / "reports" / "metrics.json").read_text())
        params = yaml.safe_load((work / "params.yaml").read_text())
        params["precision"] = "fp32"
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        wall, stages, _ = repro(work)
        fp32 = json.loads((work / "reports" / "metrics.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    delta = {t: {k: round(fp32[t][k] - committed[t][k], 4) for k in GATED} for t in committed if t in fp32}
    worst = {k: max(abs(d[k]) for d in delta.values()) for k in GATED}
    out = {"compared": "precision: fp32 against the committed reports/metrics.json (precision: auto)",
           "fp32_wall_seconds": round(wall, 1), "max_abs_delta": worst, "delta": delta, "fp32": fp32, "stages_fp32": stages}
    (ROOT / "reports" / "precision_check.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"fp32 against the committed metrics: max |delta| mAPC {worst['mAPC']:.4f}, OF1 {worst['OF1']:.4f}; "
          f"fp32 repro {wall:.0f} s; written reports/precision_check.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
