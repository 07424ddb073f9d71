"""The report stage on a real-dataset layout shows the paper's published numbers beside ours;
on the synthetic world (SYNTHETIC.txt marker) it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.evaluation.paper import PUBLISHED
from stages.cli import app
from tests.conftest import write_mirflickr
from tests.helpers import write_coco, write_nuswide

# The paper's table numbers (comparison, ablation) per dataset, as printed in the paper.
PAPER_TABLES = {"nuswide": (1, 4), "mirflickr": (2, 5), "coco": (3, 6)}
DATASETS = tuple(PAPER_TABLES)


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def _write_dataset(root: Path, dataset: str) -> Path:
    """A tiny tree of `dataset` in its official layout."""
    if dataset == "mirflickr":
        n = 40
        labels = {"dog": list(range(1, n + 1, 2)), "sea": list(range(1, n + 1, 3)), "night": list(range(2, n + 1, 4))}
        tags = {i: ["Dogs" if i % 2 else "cat", "the Sea", f"owner{i % 3}"] for i in range(1, n + 1)}
        return write_mirflickr(root, n=n, labels=labels, tags=tags)
    if dataset == "nuswide":
        return write_nuswide(root, n=24).root
    return write_coco(root, n_train=12, n_val=12).root


def _pipeline_until_report(tmp_path: Path, dataset: str, synthetic: bool, methods: tuple[str, ...] | None = None) -> str:
    """prepare -> lemmatise on a tiny `dataset` tree, random predictions for `methods` (default:
    every registered method), then `mango report`; returns results.md."""
    from pipeline.methods import all_methods

    root = _write_dataset(tmp_path / dataset, dataset)
    if synthetic:
        (root / "SYNTHETIC.txt").write_text("generated\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"name": dataset, "root": str(root)}}))
    prepared, interim = tmp_path / "prepared", tmp_path / "interim"
    _run(["prepare", "--out", str(prepared), "--params", str(params)])
    _run(["lemmatise", "--prepared", str(prepared), "--out", str(interim), "--params", str(params)])

    from pipeline.data.tables import load_annotated, write_predictions

    data = load_annotated(prepared, interim / "metadata.parquet")
    test = data.select("test")
    rng = np.random.default_rng(0)
    files = []
    for name in methods or all_methods():
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


def _paper_row(lines: list[str], title: str) -> list[str]:
    """The cells of the *paper* row under method `title`."""
    row = next(i for i, line in enumerate(lines) if line.startswith(f"| {title} |"))
    assert lines[row + 1].startswith("| *paper* |"), title
    return [c.strip() for c in lines[row + 1].strip("|").split("|")][1:]


@pytest.mark.parametrize("dataset", DATASETS)
def test_real_layout_shows_that_datasets_published_tables(tmp_path, dataset):
    """Every method with a published row gets the paper's eight numbers of this dataset under
    its own row; the headers name this dataset's tables."""
    text = _pipeline_until_report(tmp_path, dataset, synthetic=False)
    first, second = PAPER_TABLES[dataset]
    assert f"layout of the paper's table {first})" in text and f"layout of the paper's table {second};" in text
    assert "shown only for its own datasets" not in text
    lines = text.splitlines()
    paper = PUBLISHED[dataset]
    keys = ("mAPC", "mAPO", "CP", "CR", "CF1", "OP", "OR", "OF1")
    for title, published in paper.items():
        expected = ["-" if published[k] is None else f"*{published[k]:.3f}*" for k in keys]
        assert _paper_row(lines, title) == expected, title
    # MangoNet (top-level m) is compared with the paper's MangoNet-m3 row (the ablations use m = 3).
    assert _paper_row(lines, "MangoNet") == [f"*{paper['MangoNet-m3'][k]:.3f}*" for k in keys]
    assert _paper_row(lines, "KNN")[2:] == ["-"] * 6  # the paper prints no threshold metrics for KNN
    # one *paper* row per published method, plus MangoNet's
    assert sum(line.startswith("| *paper* |") for line in lines) == len(paper) + 1


def test_methods_that_did_not_run_have_no_row_published_or_not(tmp_path):
    text = _pipeline_until_report(tmp_path, "mirflickr", synthetic=False, methods=("multicnn", "ncnn", "mangonet", "insatten"))
    lines = text.splitlines()
    assert _paper_row(lines, "NCNN")[0] == f"*{PUBLISHED['mirflickr']['NCNN']['mAPC']:.3f}*"
    assert "| SRN |" not in text and "| TagProp |" not in text and "| MangoNet-m15 |" not in text
    assert sum(line.startswith("| *paper* |") for line in lines) == 4


@pytest.mark.parametrize("dataset", DATASETS)
def test_synthetic_world_has_no_published_numbers(tmp_path, dataset):
    text = _pipeline_until_report(tmp_path, dataset, synthetic=True)
    assert "*paper*" not in text
    assert "(synthetic, embedded default)" in text
    assert "shown only for its own datasets" in text
    assert "| NCNN |" in text and "| MangoNet |" in text  # the methods' own rows are still there
