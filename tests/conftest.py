"""Shared fixtures: tiny datasets written by the tests in the official on-disk layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_mirflickr(root: Path, n: int = 12, seed: int = 0, labels: dict[str, list[int]] | None = None,
                    tags: dict[int, list[str]] | None = None, size: int = 40) -> Path:
    """A MIRFlickr-25k tree: mirflickr/im{N}.jpg, meta/tags{,_raw}/tags{N}.txt, annotation files."""
    rng = np.random.default_rng(seed)
    img_dir = root / "mirflickr"
    (img_dir / "meta" / "tags").mkdir(parents=True)
    (img_dir / "meta" / "tags_raw").mkdir(parents=True)
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(img_dir / f"im{i}.jpg")
    tags = tags if tags is not None else {i: ["Dogs", "the Sea", f"owner{i % 3}"] for i in range(1, n + 1)}
    for i, ts in tags.items():
        (img_dir / "meta" / "tags_raw" / f"tags{i}.txt").write_text("\n".join(ts) + "\n")
        (img_dir / "meta" / "tags" / f"tags{i}.txt").write_text("\n".join(t.lower().replace(" ", "") for t in ts) + "\n")
    ann = root / "mirflickr25k_annotations_v080"
    ann.mkdir()
    labels = labels if labels is not None else {"dog": [1, 2, 3, 5], "sea": [2, 4, 6], "dog_r1": [1, 2], "night": [7]}
    for name, nums in labels.items():
        (ann / f"{name}.txt").write_text("".join(f"{x}\n" for x in nums))
    (ann / "README.txt").write_text("MIRFLICKR-25000 annotations\n")
    return root


@pytest.fixture
def mirflickr_root(tmp_path: Path) -> Path:
    return write_mirflickr(tmp_path / "mf")
