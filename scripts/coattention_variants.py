"""MangoNet's co-attention variants against NGCN on the test split: `make coattention-variants`.

The variant of the default was chosen on the validation split (`make select`); this
scores each named variant once on the test split, with every other setting as in params.yaml
(MangoNet's lr and epochs as chosen for it), so the report's ablation table can show what each
variant does there. Nothing here feeds back into a setting. Writes
reports/coattention_variants.json, which the report stage renders as a table.
"""

from __future__ import annotations

import json
import shutil
import sys

import yaml

from scratch import ROOT, repro, scored_metrics, scratch_copy

# name -> the mangonet.* co-attention settings it changes from the paper-literal form
VARIANTS = {
    "paper-literal (prob, beta, T 1, product)": {},
    "w from logits": {"weights": "logit"},
    "maps: InsAtten scores x": {"maps": "scores"},
    "maps: beta x P": {"maps": "beta_p"},
    "temperature 0.1": {"temperature": 0.1},
    "learnt temperature": {"learn_temperature": True},
    "eq. 7 geometric mean": {"target_weights": "geomean"},
    "eq. 7 mean": {"target_weights": "mean"},
}
LITERAL = {"weights": "prob", "maps": "beta", "temperature": 1.0, "learn_temperature": False, "target_weights": "literal"}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from pipeline.data.tables import read_attention_stats

    work = scratch_copy("mango-variants-")
    base = yaml.safe_load((work / "params.yaml").read_text())
    if base["dataset"].get("score_on", "test") != "test":
        raise SystemExit("params.yaml scores the validation split; this script is the test-split table")
    rows = {}

    def score(stage: str, method: str, params: dict) -> dict:
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _, stages, _ = repro(work, stage)
        pred = work / "data" / "predictions" / f"{method}.parquet"
        m = scored_metrics(work, str(pred.relative_to(work)))
        return {"mAPC": round(m["mAPC"], 4), "OF1": round(m["OF1"], 4), "seconds": stages.get(stage),
                "attention": read_attention_stats(pred)}

    try:
        rows["NGCN (holistic nodes)"] = {"settings": {}, **score("train@ngcn", "ngcn", base)}
        print(json.dumps(rows), flush=True)
        for name, change in VARIANTS.items():
            params = yaml.safe_load(yaml.safe_dump(base))
            params["mangonet"].update({**LITERAL, **change})
            rows[name] = {"settings": change, **score("train@mangonet", "mangonet", params)}
            print(json.dumps({name: rows[name]}), flush=True)
        default = {k: base["mangonet"][k] for k in LITERAL}
        change = {k: v for k, v in default.items() if LITERAL[k] != v}
        if change and change not in VARIANTS.values():  # the default combines several changes: its own row
            name = "default, chosen on validation (" + ", ".join(f"{k} {v}" for k, v in change.items()) + ")"
            rows[name] = {"settings": change, **score("train@mangonet", "mangonet", base)}
            print(json.dumps({name: rows[name]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "reports" / "coattention_variants.json"
    dataset = {"name": base["dataset"]["name"], "root": base["dataset"]["root"]}
    out.write_text(json.dumps({"split": "test", "dataset": dataset, "m": base["m"], "default": default,
                               "variants": rows}, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
