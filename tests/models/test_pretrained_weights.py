"""The ImageNet MobileNetV2 weights that `make setup` installs (scripts/install_weights.py) load
offline through torchvision's own hash-checked path and recognise real photographs.

Photographs shipped by installed packages: scikit-learn's china.jpg (the Summer Palace, Beijing)
and matplotlib's grace_hopper.jpg (Grace Hopper in US Navy uniform). Measured with these weights:
china.jpg top-1 "palace" p=0.69; grace_hopper.jpg top-1 "bow tie" p=0.51 (she wears a black
tie), "military uniform" second with p=0.18. Random weights give every class p=0.001.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from matplotlib import cbook
from matplotlib.image import imread
from PIL import Image
from sklearn.datasets import load_sample_image
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1
# (picture, expected ImageNet category, within the top k, with probability above): about half the measured p
CASES = [
    (lambda: load_sample_image("china.jpg"), "palace", 1, 0.35),
    (lambda: imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), "military uniform", 3, 0.09),
]


def cached_file() -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(WEIGHTS.url).path)
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make setup` (scripts/install_weights.py installs it)", pytrace=False)
    return path


def recognises(model: torch.nn.Module) -> list[str]:
    """One line per picture the model gets wrong (empty when it recognises them all)."""
    categories, failures = WEIGHTS.meta["categories"], []
    for load, expected, k, min_prob in CASES:
        x = WEIGHTS.transforms()(Image.fromarray(load())).unsqueeze(0)
        with torch.no_grad():
            probs = model.eval()(x).softmax(dim=1)[0]
        top = [(categories[i], round(float(probs[i]), 3)) for i in probs.topk(k).indices]
        if not any(c == expected and p > min_prob for c, p in top):
            failures.append(f"expected {expected!r} in the top {k} with p > {min_prob}, got {top}")
    return failures


def test_cached_file_passes_torchvision_hash_check():
    path = cached_file()
    prefix = torch.hub.HASH_REGEX.search(path.name).group(1)
    assert len(prefix) >= 8
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.startswith(prefix), f"{path}: sha256 {digest} does not start with {prefix}: run `make setup`"


def test_imagenet_weights_load_offline_and_recognise_photographs(monkeypatch):
    cached_file()

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"torchvision tried to download {url}: the cached weights were not used")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert recognises(mobilenet_v2(weights=WEIGHTS)) == []

    torch.manual_seed(0)
    assert len(recognises(mobilenet_v2(weights=None))) == len(CASES), "random weights pass the same checks"
