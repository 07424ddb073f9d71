"""The report stage on a real-dataset layout shows the paper's published numbers beside ours;
on the synthetic world (SYNTHETIC.txt marker) it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.paper_results import PUBLISHED
from stages.cli import app
from tests.conftest import write_mirflickr

METHODS = ("multicnn", "ncnn", "mangonet", "insatten")


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def _pipeline_until_report(tmp_path: Path, synthetic: bool) -> str:
    n = 40
    labels = {"dog": list(range(1, n + 1, 2)), "sea": list(range(1, n + 1, 3)), "night": list(range(2, n + 1, 4))}
    tags = {i: ["Dogs" if i % 2 else "cat", "the Sea", f"owner{i % 3}"] for i in range(1, n + 1)}
    root = write_mirflickr(tmp_path / "mf", n=n, labels=labels, tags=tags)
    if synthetic:
        (root / "SYNTHETIC.txt").write_text("generated\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"name": "mirflickr", "root": str(root), "labels": "potential"}}))
    prepared, interim = tmp_path / "prepared", tmp_path / "interim"
    _run(["prepare", "--out", str(prepared), "--params", str(params)])
    _run(["lemmatise", "--prepared", str(prepared), "--out", str(interim), "--params", str(params)])

    from pipeline.data import load_annotated, write_predictions

    data = load_annotated(prepared, interim / "metadata.parquet")
    test = data.select("test")
    rng = np.random.default_rng(0)
    files = []
    for name in METHODS:
        path = tmp_path / "predictions" / f"{name}.parquet"
        path.parent.mkdir(exist_ok=True)
        write_predictions(path, [data.image_ids[i] for i in test], rng.random((len(test), len(data.label_names))),
                          data.label_names)
        files += ["--predictions", str(path)]
    table = tmp_path / "results.md"
    _run(["report", "--prepared", str(prepared), "--interim", str(interim), *files,
          "--metrics", str(tmp_path / "metrics.json"), "--table", str(table),
          "--details", str(tmp_path / "evaluation.json"), "--params", str(params)])
    return table.read_text()


def test_real_mirflickr_layout_shows_the_papers_tables_2_and_5(tmp_path):
    text = _pipeline_until_report(tmp_path, synthetic=False)
    assert "table 2" in text and "table 5" in text
    assert "shown only for its own datasets" not in text
    paper = PUBLISHED["mirflickr"]
    lines = text.splitlines()
    for title in ("Multi-CNN", "NCNN", "InsAtten"):
        row = next(i for i, line in enumerate(lines) if line.startswith(f"| {title} |"))
        assert lines[row + 1].startswith("| *paper* |"), title
        assert f"*{paper[title]['mAPC']:.3f}*" in lines[row + 1]
        assert f"*{paper[title]['OF1']:.3f}*" in lines[row + 1]
    # MangoNet (top-level m) is compared with the paper's MangoNet-m3 row in the ablation table.
    row = next(i for i, line in enumerate(lines) if line.startswith("| MangoNet |"))
    assert f"*{paper['MangoNet-m3']['mAPC']:.3f}*" in lines[row + 1]
    # Methods that did not run have no row, published or not.
    assert "| SRN |" not in text and "| TagProp |" not in text


@pytest.mark.parametrize("synthetic", [True])
def test_synthetic_world_has_no_published_numbers(tmp_path, synthetic):
    text = _pipeline_until_report(tmp_path, synthetic=synthetic)
    assert "*paper*" not in text
    assert "(synthetic, embedded default)" in text
    assert "shown only for its own datasets" in text
