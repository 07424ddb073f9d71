"""Settings chosen on validation (`make select`): params.yaml holds them, the report carries them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.errors import MangoError
from pipeline.report import read_selection

ROOT = Path(__file__).resolve().parents[1]
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
                                             "grid": {"lr": [0.2]}, "section": "methods.ncnn"}}
    path.write_text(json.dumps({"methods": {"ncnn": {"chosen": {}}}}))
    with pytest.raises(MangoError, match="not a selection report.*grid_size"):
        read_selection(path)
    with pytest.raises(MangoError, match="make select"):
        read_selection(tmp_path / "absent.json")
