"""The static results page: which images it shows, what each card says, and that a real browser
renders it (headless Chromium, when installed)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.evaluation.browse import Card, choose_rows, write_page
from pipeline.schemas import METRIC_KEYS

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["dog", "sea", "sky"]


def test_choose_rows_puts_the_largest_disagreements_first():
    mangonet = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.2, 0.2], [0.6, 0.4]])
    multicnn = np.array([[0.1, 0.1], [0.5, 0.5], [0.9, 0.1], [0.2, 0.3], [0.6, 0.4]])
    # L1 gaps: 0.8, 0, 1.6, 0.1, 0
    rows = choose_rows(mangonet, multicnn, n_disagree=2, n_more=2, seed=0)
    assert rows[:2].tolist() == [2, 0]
    assert len(rows) == 4 and len(set(rows.tolist())) == 4 and set(rows[2:]) <= {1, 3, 4}


def make_cards(tmp_path: Path, n: int) -> list[Card]:
    rng = np.random.default_rng(0)
    cards = []
    for i in range(n):
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        alpha = np.ones((3, 2, 2))
        alpha[0, 0, 0] = 3.0  # a peaked target map
        alpha[2] = np.nan  # only one neighbour
        cards.append(Card(image_id=f"i{i}", path=str(path), truth=["dog"] if i % 2 else ["sea", "sky"],
                          predicted={"MangoNet": ["dog"], "NCNN": ["sea"], "Multi-CNN": []},
                          neighbours=[(f"n{i}", str(path), ["beach", "wave"])], alpha=alpha))
    return cards


def details_and_metrics() -> tuple[dict, dict]:
    methods = {t: {"per_label_ap": {"dog": 0.5, "sea": 0.25, "sky": None}} for t in ("MangoNet", "NCNN", "Multi-CNN")}
    metrics = {t: {k: 0.5 for k in METRIC_KEYS} for t in methods}
    return {"summary": {"test": 25}, "methods": methods}, metrics


def test_page_shows_every_card_its_labels_marked_and_a_sortable_table(tmp_path):
    details, metrics = details_and_metrics()
    index = write_page(tmp_path / "browse", details, metrics, METRIC_KEYS, make_cards(tmp_path, 25), LABELS, "results")
    page = index.read_text()
    assert page.count('<article class="card"') == 25
    assert page.count("<tr><td>") == 3 and "AP dog" in page and "AP sky" in page
    assert '<td data-v="-1">–</td>' in page  # a label without AP is shown as such
    assert 'class="chip ok">dog &#10003;' in page and 'class="chip bad">sea &#10007;' in page
    assert all(f'<option value="{lab}">' in page for lab in LABELS)
    assert "http://" not in page and "https://" not in page  # nothing fetched
    imgs = sorted(p.name for p in (tmp_path / "browse" / "img").iterdir())
    assert len(imgs) == 25 * 4  # picture, overlay, neighbour, its overlay
    target, overlay = (np.asarray(Image.open(tmp_path / "browse" / "img" / f"0{s}.jpg"), dtype=float) for s in ("", "_att"))
    assert np.abs(target - overlay).mean() > 5  # the overlay is drawn


def test_page_renders_in_headless_chromium(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import browse_check

    if browse_check.browser() is None:
        pytest.skip("no Chromium installed (make browse-check installs Debian's chromium)")
    details, metrics = details_and_metrics()
    index = write_page(tmp_path / "browse", details, metrics, METRIC_KEYS, make_cards(tmp_path, 24), LABELS, "results")
    assert browse_check.check(index, tmp_path / "shot.png", min_images=20) == []
    assert browse_check.check(index, tmp_path / "shot.png", min_images=30)  # too few cards: named
    shutil.rmtree(tmp_path / "browse" / "img")
    assert any("without a file" in p for p in browse_check.check(index, tmp_path / "shot.png", min_images=20))


def test_ids_and_tags_are_escaped_and_never_file_names(tmp_path):
    details, metrics = details_and_metrics()
    cards = make_cards(tmp_path, 2)
    cards[0].image_id = 'x" onerror="alert(1)'
    cards[1].image_id = "../../escape/<b>"
    cards[1].neighbours = [("n<1>", cards[1].path, ['"quoted"', "<tag>"])]
    index = write_page(tmp_path / "browse", details, metrics, METRIC_KEYS, cards, ["sea sky", "dog"], "results")
    page = index.read_text(encoding="utf-8")
    assert 'onerror="alert' not in page and "<b>" not in page and "<tag>" not in page
    assert "&quot;quoted&quot;" in page and "x&quot; onerror=&quot;alert(1)" in page
    assert sorted(p.name for p in (tmp_path / "browse" / "img").iterdir())[:2] == ["0.jpg", "0_att.jpg"]
    assert not (tmp_path / "escape").exists()
    assert '<option value="sea sky">' in page and "JSON.parse(c.dataset.labels)" in page  # labels with spaces filter
