"""scripts/select_settings.py's choice: the best validation point, within the plan's attention bound."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    sys.path.insert(0, str(ROOT / "scripts"))  # it imports scratch.py beside it
    spec = importlib.util.spec_from_file_location("select_settings", ROOT / "scripts" / "select_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(name, val, alpha=None):
    return {"point": {"v": name}, "val_mAPC": val, **({"attention": {"alpha_entropy": alpha}} if alpha is not None else {})}


def test_without_a_bound_the_best_validation_point_wins_and_ties_go_to_the_first():
    choose = _module().choose
    rows = [_row("a", 0.80, 1.0), _row("b", 0.86, 1.0), _row("c", 0.86, 0.5)]
    assert choose(rows, None) == (1, None)


def test_the_bound_keeps_only_points_whose_alpha_attends():
    choose = _module().choose
    rows = [_row("literal", 0.864, 0.9999), _row("sharp", 0.855, 0.31), _row("mid", 0.861, 0.6465),
            _row("edge", 0.861, 0.9), _row("flat", 0.870, 0.95)]
    best, record = choose(rows, 0.9)
    assert best == 2  # mid and edge tie at 0.861 (edge is exactly at the bound): the first listed wins
    assert record == {"max_alpha_entropy": 0.9, "eligible": 3,
                      "unconstrained": {"point": {"v": "flat"}, "val_mAPC": 0.870}}


def test_when_no_point_attends_the_best_of_all_is_taken_and_the_record_says_so():
    choose = _module().choose
    rows = [_row("a", 0.80, 0.99), _row("b", 0.82, 1.0), _row("no stats", 0.83)]
    best, record = choose(rows, 0.9)
    assert best == 2 and record["eligible"] == 0
