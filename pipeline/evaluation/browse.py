"""A static results page (`reports/browse/index.html`) a researcher opens in a browser: no server,
nothing fetched from the internet, thumbnails beside it under `reports/browse/img/`.

- The eight metrics and every method's per-label AP in one table, sortable by any column.
- Test images: those where MangoNet and Multi-CNN disagree most, then a seeded sample of the
  rest. Each card shows the picture, its true labels, the top labels of MangoNet, NCNN and
  Multi-CNN (right and wrong marked), its m metadata neighbours with their tags, and MangoNet's
  co-attention over the target and each neighbour (alpha x P on one absolute colour scale,
  1 = uniform).
- A filter by label (true or predicted) and the page's own small script, inline.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

THUMB = 112  # pixels: the side of every thumbnail
METHODS = ("MangoNet", "NCNN", "Multi-CNN")  # the predictions each card shows


@dataclass
class Card:
    """One test image as the page shows it."""

    image_id: str
    path: str
    truth: list[str]
    predicted: dict[str, list[str]]  # method title -> its top labels
    neighbours: list[tuple[str, str, list[str]]]  # (image_id, path, terms)
    alpha: np.ndarray  # (1 + m, H, W) alpha x P of the target, then each neighbour (nan: no such node)


def choose_rows(mangonet: np.ndarray, multicnn: np.ndarray, n_disagree: int, n_more: int, seed: int = 0) -> np.ndarray:
    """Indices of the test images shown: the n_disagree where MangoNet's and Multi-CNN's scores
    differ most (L1 over labels), then n_more others drawn with `seed`, in that order."""
    gap = np.abs(mangonet - multicnn).sum(axis=1)
    top = np.argsort(-gap, kind="stable")[:n_disagree]
    rest = np.setdiff1d(np.arange(len(gap)), top)
    more = np.random.default_rng(seed).choice(rest, size=min(n_more, rest.size), replace=False) if rest.size else rest
    return np.concatenate([top, np.sort(more)]).astype(np.int64)


def thumbnail(path: str, out: Path, heat: np.ndarray | None = None, vmax: float = 2.0) -> None:
    """A THUMB x THUMB JPEG of the image; with `heat` (H, W) the co-attention overlaid in red, its
    opacity heat / vmax (the same scale on every card)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB").resize((THUMB, THUMB), Image.BILINEAR)).astype(np.float32)
    if heat is not None:
        a = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize((THUMB, THUMB), Image.BILINEAR))
        a = np.clip(a / vmax, 0.0, 1.0)[..., None] * 0.75
        rgb = rgb * (1 - a) + np.array([255.0, 30.0, 30.0]) * a
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(out, quality=85)


def _chips(labels: list[str], truth: set[str] | None = None) -> str:
    if not labels:
        return '<span class="none">none</span>'
    out = []
    for lab in labels:
        kind = "" if truth is None else (" ok" if lab in truth else " bad")
        mark = "" if truth is None else (" &#10003;" if lab in truth else " &#10007;")
        out.append(f'<span class="chip{kind}">{html.escape(lab)}{mark}</span>')
    return " ".join(out)


def metrics_table(details: dict, metrics: dict, metric_keys: tuple[str, ...]) -> str:
    """One sortable table: a row per method, the eight metrics then the AP of every label."""
    methods = {k: v for k, v in details["methods"].items() if not k.startswith("_")}
    labels = sorted({lab for v in methods.values() for lab in v["per_label_ap"]})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("method", *metric_keys, *(f"AP {lab}" for lab in labels)))
    rows = []
    for title, v in methods.items():
        row = metrics.get(title, {})
        cells = [f"<td>{html.escape(title)}</td>"]
        for k in metric_keys:
            x = row.get(k)
            cells.append(f'<td data-v="{x if x is not None else -1}">{"" if x is None else f"{x:.3f}"}</td>')
        for lab in labels:
            x = v["per_label_ap"].get(lab)
            cells.append(f'<td data-v="{x if x is not None else -1}">{"–" if x is None else f"{x:.3f}"}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table id="metrics" class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def card_html(card: Card, k: int, img: str) -> str:
    """Card k; its thumbnails are img/<k>*.jpg (file names never come from ids or tags)."""
    truth = set(card.truth)
    every = sorted(truth | {lab for labs in card.predicted.values() for lab in labs})
    preds = "".join(f"<tr><th>{html.escape(t)}</th><td>{_chips(labs, truth)}</td></tr>" for t, labs in card.predicted.items())
    nb = []
    for j, (nid, _, terms) in enumerate(card.neighbours, start=1):
        nb.append(f'<figure><img src="{img}/{k}_n{j}.jpg" alt="neighbour {html.escape(nid)}">'
                  f'<img src="{img}/{k}_n{j}_att.jpg" alt="co-attention of neighbour {html.escape(nid)}">'
                  f'<figcaption>{html.escape(nid)}: {html.escape(", ".join(terms[:6]))}</figcaption></figure>')
    nbs = "".join(nb) or '<p class="none">no metadata neighbours</p>'
    return (f'<article class="card" data-labels="{html.escape(json.dumps(every))}">'
            f'<h3>{html.escape(card.image_id)}</h3>'
            f'<div class="target"><figure><img src="{img}/{k}.jpg" alt="image {html.escape(card.image_id)}">'
            f'<img src="{img}/{k}_att.jpg" alt="co-attention of {html.escape(card.image_id)}">'
            f'<figcaption>picture | co-attention</figcaption></figure></div>'
            f'<table class="preds"><tr><th>true</th><td>{_chips(card.truth)}</td></tr>{preds}</table>'
            f'<div class="neighbours"><h4>metadata neighbours</h4>{nbs}</div></article>')


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{margin-top:1.5em}
table.sortable{border-collapse:collapse;font-size:12px;display:block;overflow-x:auto}
table.sortable th{cursor:pointer;background:#eee;position:sticky;top:0;white-space:nowrap}
table.sortable td,table.sortable th{border:1px solid #ccc;padding:2px 6px;text-align:right}
table.sortable td:first-child{text-align:left;white-space:nowrap}
#cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px}
.card h3{margin:0 0 4px;font-size:1em}
figure{display:inline-block;margin:2px;text-align:center;font-size:11px;vertical-align:top;max-width:240px}
figure img{width:112px;height:112px;margin:1px}
.chip{display:inline-block;padding:0 5px;margin:1px;border-radius:8px;background:#eef}
.chip.ok{background:#d7f5d7}.chip.bad{background:#fbd5d5}.none{color:#888}
.preds th{text-align:left;padding-right:8px;font-weight:600}
.hidden{display:none}
"""

SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      if (x === undefined) { x = a.cells[col].textContent; y = b.cells[col].textContent;
        return asc ? x.localeCompare(y) : y.localeCompare(x); }
      return asc ? x - y : y - x; });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
document.getElementById('label').addEventListener('change', function(e){
  var want = e.target.value, shown = 0;
  document.querySelectorAll('.card').forEach(function(c){
    var ok = !want || JSON.parse(c.dataset.labels).indexOf(want) >= 0;
    c.classList.toggle('hidden', !ok); if (ok) shown++; });
  document.getElementById('count').textContent = shown;
});
"""


def write_page(out_dir: Path, details: dict, metrics: dict, metric_keys: tuple[str, ...], cards: list[Card],
               label_names: list[str], title: str) -> Path:
    """index.html and img/ under out_dir (a fresh folder)."""
    img_dir = out_dir / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    shown = [c.alpha[np.isfinite(c.alpha)] for c in cards]
    vmax = max([2.0] + [float(a.max()) for a in shown if a.size])
    for k, card in enumerate(cards):
        thumbnail(card.path, img_dir / f"{k}.jpg")
        thumbnail(card.path, img_dir / f"{k}_att.jpg", card.alpha[0], vmax)
        for j, (_, path, _) in enumerate(card.neighbours, start=1):
            thumbnail(path, img_dir / f"{k}_n{j}.jpg")
            thumbnail(path, img_dir / f"{k}_n{j}_att.jpg", card.alpha[j], vmax)
    options = "".join(f'<option value="{html.escape(lab)}">{html.escape(lab)}</option>' for lab in label_names)
    body = (f"<h1>{html.escape(title)}</h1>"
            f"<p>Scored on {html.escape(str(details.get('summary', {}).get('test', '?')))} test images. "
            "Click a column to sort.</p>"
            f"<h2>Metrics and per-label AP</h2>{metrics_table(details, metrics, metric_keys)}"
            f"<h2>Test images</h2><p>The {len(cards)} images below: first those where MangoNet and Multi-CNN "
            "disagree most, then a sample of the rest. Green: a correct label, red: a wrong one. "
            f"Co-attention: red = alpha x P, 0 to {vmax:.1f} on every card (1 = uniform).</p>"
            f'<p><label>Label: <select id="label"><option value="">all</option>{options}</select></label> '
            f'<span id="count">{len(cards)}</span> images</p>'
            f'<div id="cards">{"".join(card_html(c, k, "img") for k, c in enumerate(cards))}</div>')
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>")
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
