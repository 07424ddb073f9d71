"""`mango annotate` against the pipeline on comparable images, with bad photos mixed in.

    python scripts/annotate_check.py [--out reports/annotate_check.json]

The trained workspace's test images are passed as new photos (their paths and raw tags, their own
ids: so the indexed copy of each is never its own neighbour), with a missing file, a corrupt file
and a duplicate id added. Checks that every bad photo is named and skipped and every good one has
a row, and compares the annotations' eight metrics with the MangoNet stage's on the same images
(the bar: mAPC within 0.05). Neighbours differ by design: annotate searches all indexed images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.evaluation.metrics import evaluate_scores


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("reports/annotate_check.json"))
    args = ap.parse_args(argv)
    meta = pl.read_parquet("data/interim/metadata.parquet").filter(pl.col("split") == "test")
    images = pl.read_parquet("data/prepared/images.parquet").select("image_id", "path")
    raw = pl.read_parquet("data/prepared/metadata_raw.parquet")
    tags = raw.group_by("image_id", maintain_order=True).agg(pl.col("text").alias("tags"))
    photos = meta.select("image_id").join(images, on="image_id", maintain_order="left").join(
        tags, on="image_id", how="left", maintain_order="left")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
        bad = pl.DataFrame({"image_id": ["missing-photo", "corrupt-photo", photos["image_id"][0]],
                            "path": [str(tmp / "missing.jpg"), str(tmp / "corrupt.jpg"), photos["path"][0]],
                            "tags": [["dog"], ["sea"], ["sky"]]})
        pl.concat([photos, bad]).write_parquet(tmp / "new.parquet")
        proc = subprocess.run([sys.executable, "-m", "stages.cli", "annotate", "--input", str(tmp / "new.parquet"),
                               "--out", str(tmp / "out.parquet")], capture_output=True, text=True)
        print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
        if proc.returncode != 0:
            print(proc.stderr[-2000:])
            return 1
        out = pl.read_parquet(tmp / "out.parquet")
    named = all(s in proc.stderr for s in ("missing.jpg does not exist", "corrupt.jpg is not a readable image",
                                           f"image_id '{photos['image_id'][0]}' in row {photos.height + 2}"))
    rows_ok = out["image_id"].to_list() == photos["image_id"].to_list()
    labels = pl.read_parquet("data/prepared/labels.parquet")
    names = [c for c in labels.columns if c != "image_id"]

    def metrics(frame: pl.DataFrame) -> dict:
        truth = frame.select("image_id").join(labels, on="image_id", how="left", maintain_order="left")
        ev = evaluate_scores(frame.select(names).to_numpy(), truth.select(names).to_numpy().astype(np.uint8), names,
                             top_k=3, threshold=0.5)
        return {k: round(float(v), 4) for k, v in ev.metrics.items()}

    ours, theirs = metrics(out), metrics(pl.read_parquet("data/predictions/mangonet.parquet"))
    result = {"photos": photos.height, "bad_named": named, "every_good_photo_has_a_row": rows_ok,
              "annotate": ours, "mangonet_stage": theirs, "mAPC_difference": round(ours["mAPC"] - theirs["mAPC"], 4)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ok = named and rows_ok and abs(result["mAPC_difference"]) <= 0.05
    print(f"annotate-check: {'ok' if ok else 'FAILED'}: mAPC {ours['mAPC']:.4f} (annotate) vs {theirs['mAPC']:.4f} "
          f"(MangoNet stage) on {photos.height} test images; bad photos named: {named}; a row per good photo: {rows_ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
