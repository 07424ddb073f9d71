"""Benchmark: wall time of a from-scratch `dvc repro` of the default pipeline, per stage.

Runs in a scratch copy of the repository (tracked files only), so the workspace is untouched.
Usage: python scripts/bench_repro.py [--keep]
"""

from __future__ import annotations

import json
import shutil
import sys

from scratch import ROOT, repro, scratch_copy, startups


def main() -> int:
    work = scratch_copy("mango-bench-")
    try:
        wall, stages, log = repro(work, "--force")  # the copy carries dvc.lock: force every stage
        start = startups(log)
        print("| stage | work s | start-up s |\n|---|---:|---:|")
        for name, sec in stages.items():
            print(f"| {name} | {sec:.1f} | {start.get(name, float('nan')):.1f} |")
        body, up = sum(stages.values()), sum(start.values())
        dvc = wall - body - up
        print(f"| **all stages** | **{body:.1f}** | **{up:.1f}** |")
        print(f"| **dvc repro, wall** | **{wall:.1f}** | (DVC's own bookkeeping between stages: {dvc:.1f} s) |")
        out = ROOT / "reports" / "bench_repro.json"
        out.write_text(json.dumps({"wall_seconds": round(wall, 1), "work_seconds": round(body, 1),
                                   "startup_seconds": round(up, 1), "dvc_seconds": round(dvc, 1),
                                   "stages": stages, "startup": start}, indent=2) + "\n")
        print(f"written {out.relative_to(ROOT)}")
    finally:
        if "--keep" not in sys.argv:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch copy kept at {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
