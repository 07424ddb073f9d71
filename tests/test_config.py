from pathlib import Path

import pytest
import yaml

from pipeline.config import load_params
from pipeline.errors import MangoError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, data) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_repository_params_load():
    """m and k_max are tunable (`dvc exp run -S m=15`); what must hold for any valid setting: m is a
    neighbourhood size the neighbour search provides, and k_max covers every m of the sweep."""
    from pipeline.methods import all_methods

    p = load_params(ROOT / "params.yaml")
    assert isinstance(p.m, int) and 1 <= p.m <= p.neighbours.k_max
    fixed = {method.m for method in all_methods().values() if method.m is not None}  # the sweep's methods
    assert fixed == {3, 7, 15}  # the paper's MangoNet-m3 / m7 / m15 rows
    assert max(fixed) <= p.neighbours.k_max


@pytest.mark.parametrize("m", [1, 3, 7, 15])
def test_repository_params_take_any_m_up_to_k_max(tmp_path, m):
    """`-S m=<value>` on the repository's params loads for every m from 1 to k_max (here the
    paper's largest neighbourhood, 15)."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["m"] = m
    data.setdefault("neighbours", {})["k_max"] = 15
    assert load_params(write(tmp_path, data)).m == m


@pytest.mark.parametrize("m, match", [
    (0, r"params: m must be between 1 and neighbours.k_max \(\d+\), got 0"),
    (-1, r"params: m must be between 1 and neighbours.k_max \(\d+\), got -1"),
    ("three", r"params: m must be int .*got 'three'"),
    (3.5, r"params: m must be int .*got 3.5"),
])
def test_repository_params_reject_an_invalid_m_naming_the_key(tmp_path, m, match):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["m"] = m
    with pytest.raises(MangoError, match=match):
        load_params(write(tmp_path, data))


def test_m_beyond_the_repository_k_max_is_rejected(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    k_max = load_params(ROOT / "params.yaml").neighbours.k_max
    data["m"] = k_max + 1
    with pytest.raises(MangoError, match=rf"params: m must be between 1 and neighbours.k_max \({k_max}\), got {k_max + 1}"):
        load_params(write(tmp_path, data))


@pytest.mark.parametrize("data, match", [
    ({"m": 0}, r"params: m must be between 1 and neighbours.k_max \(15\), got 0"),
    ({"m": 16}, r"m must be between 1 and neighbours.k_max \(15\), got 16"),
    ({"m": 4, "neighbours": {"k_max": 3}}, r"got 4"),
    ({"backbone": {"arch": "VGG 16"}}, r"backbone.arch must be a torchvision model name.*got 'VGG 16'"),
    ({"backbone": {"output_stride": 4}}, r"backbone.output_stride must be 0 \(the model's own\), 16 or 8, got 4"),
    ({"backbone": {"weights": "no/such.pt"}}, r"backbone.weights must be none, imagenet, a weights name.*got 'no/such.pt'"),
    ({"backbone": {"arch": "resnet10", "weights": "imagenet"}}, r"no ImageNet weights for resnet10"),
    ({"finetune": {"train_blocks": -2}}, r"finetune.train_blocks must be -1 \(all\), 0 \(head only\) or more"),
    ({"dataset": {"score_on": "train"}}, r"dataset.score_on must be test or val, got 'train'"),
    ({"dataset": {"labels": "some"}}, r"dataset.labels must be one of potential, relevant, all"),
    ({"finetune": {"lr": -1}}, r"finetune.lr must be > 0"),
    ({"finetune": {"epochs": "ten"}}, r"finetune.epochs must be int"),
    ({"mangonet": {"colour": 1}}, r"unknown key\(s\) colour in section 'mangonet'"),
    ({"device": "tpu"}, r"device must be one of auto, cpu, cuda"),
])
def test_bad_values_name_the_key(tmp_path, data, match):
    with pytest.raises(MangoError, match=match):
        load_params(write(tmp_path, data))


def test_missing_file(tmp_path):
    with pytest.raises(MangoError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
