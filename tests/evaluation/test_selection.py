"""Settings chosen on validation (`make select`): params.yaml holds them, the report carries them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.errors import MangoError
from pipeline.evaluation.report import read_selection

ROOT = Path(__file__).resolve().parents[2]
NEURAL = ("mangonet", "ngcn", "ncnn", "srn")


def _section(params: dict, dotted: str) -> dict:
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def test_params_yaml_holds_every_setting_chosen_on_validation():
    """A setting changed in params.yaml without re-running the selection fails here."""
    selection = json.loads((ROOT / "reports" / "selection.json").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    plan = yaml.safe_load((ROOT / "scripts" / "selection_plan.yaml").read_text())["methods"]
    assert set(selection["methods"]) == set(plan), "re-run `make select`: the plan and the selection differ"
    assert selection["protocol"]["score_on"] == "val"
    for method, sel in selection["methods"].items():
        if not sel["grid"]:
            continue  # CNN Voting chooses its w inside its stage
        held = _section(params, sel["section"])
        for key, value in sel["chosen"].items():
            assert held[key] == value, f"params.yaml {sel['section']}.{key} = {held[key]}, chosen on validation: {value}"
        assert sel["grid_size"] == len(sel["results"])
    sizes = {m: selection["methods"][m]["grid_size"] for m in NEURAL}
    assert len(set(sizes.values())) == 1, f"unequal tuning budgets: {sizes}"


def test_read_selection_and_its_errors(tmp_path):
    path = tmp_path / "selection.json"
    path.write_text(json.dumps({"methods": {"ncnn": {"chosen": {"lr": 0.2}, "grid_size": 6, "val_mAPC": 0.7,
                                                     "grid": {"lr": [0.2]}, "section": "methods.ncnn", "results": []}}}))
    assert read_selection(path) == {"ncnn": {"chosen": {"lr": 0.2}, "grid_size": 6, "val_mAPC": 0.7,
                                             "grid": {"lr": [0.2]}, "section": "methods.ncnn", "dataset": {}}}
    path.write_text(json.dumps({"methods": {"ncnn": {"chosen": {}}}}))
    with pytest.raises(MangoError, match="not a selection report.*grid_size"):
        read_selection(path)
    with pytest.raises(MangoError, match="make select"):
        read_selection(tmp_path / "absent.json")


def test_the_report_says_where_settings_and_variants_come_from():
    from pipeline.evaluation.report import results_markdown

    metrics = {"MangoNet": {k: 0.5 for k in ("mAPC", "mAPO", "CP", "CR", "CF1", "OP", "OR", "OF1")}}
    details = {"MangoNet": {"method": "mangonet"}, "_label_frequency_baseline": {"mAPC": 0.1, "mAPO": 0.1}}
    sel = {"mangonet": {"chosen": {"lr": 0.5}, "grid_size": 6, "val_mAPC": 0.8, "grid": {}, "section": "methods.mangonet",
                        "dataset": {"name": "mirflickr", "root": "data/raw/synthetic"}}}
    variants = {"split": "test", "dataset": {"root": "data/raw/synthetic"}, "m": 3, "default": {},
                "variants": {"paper-literal": {"mAPC": 0.78, "OF1": 0.76, "attention": {"alpha_entropy": 1.0}}}}
    summary = {"dataset": "mirflickr", "root": "data/raw/synthetic", "label_set": "potential", "train": 1, "test": 1,
               "n_labels": 1, "vocab_size": 1}
    same = results_markdown(metrics, details, summary, selection=sel, variants=variants)
    assert "| paper-literal | 0.780 | 0.760 |" in same and "| MangoNet | lr 0.5 | 6 | 0.800 |" in same
    assert "another dataset" not in same
    other = results_markdown(metrics, details, {**summary, "root": "data/raw/tuxpaint"}, selection=sel, variants=variants)
    assert "| paper-literal |" not in other and "are not shown" in other
    assert "of `data/raw/synthetic` (another dataset; none were chosen on this one)" in other
