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
    p = load_params(ROOT / "params.yaml")
    assert p.m == 3 and p.neighbours.k_max == 15


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
