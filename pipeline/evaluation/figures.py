"""Figures of the paper, from the pipeline's outputs (matplotlib, written as PNG).

- Fig. 5: per-label AP of MangoNet (y) against NCNN (x) with the y = x line.
- Fig. 6: co-attention maps alpha (eq. 5 and 8) of a few test images and their neighbours,
  overlaid on the images. This figure decodes a handful of images for display only; no model
  runs on pixels here (alpha comes from the cached features and attention).
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

log = logging.getLogger(__name__)


def ap_scatter(per_label_x: dict[str, float | None], per_label_y: dict[str, float | None], x_name: str, y_name: str,
               title: str, out: Path) -> int:
    """Fig. 5: one point per label (labels without an AP on either side are skipped); returns points."""
    labels = [k for k in per_label_y if per_label_y[k] is not None and per_label_x.get(k) is not None]
    x = np.array([per_label_x[k] for k in labels])
    y = np.array([per_label_y[k] for k in labels])
    fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--", label="y = x")
    ax.scatter(x, y, s=28, color="tab:red", zorder=3)
    for k, a, b in zip(labels, x, y):
        ax.annotate(k, (a, b), fontsize=7, xytext=(3, 2), textcoords="offset points")
    above = int((y > x).sum())
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"{x_name} AP", ylabel=f"{y_name} AP",
           title=f"{title}\n{above} of {len(labels)} labels above y = x")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return len(labels)


def coattention_grid(images: list[list[str]], alphas: np.ndarray, masks: np.ndarray, captions: list[list[str]],
                     out: Path, size: int = 128) -> None:
    """Fig. 6: rows of (target, neighbours); each image above its co-attention map overlay.

    images: paths per row (target first); alphas (R, N, H, W) as alpha * P (1 = uniform); masks
    (R, N). Every map shares one absolute colour scale (0 to the largest value shown, at least 2)
    with a colour bar, so a flat map looks flat.
    """
    rows, n = alphas.shape[:2]
    vmax = max(2.0, float(alphas[masks].max()) if masks.any() else 2.0)
    fig, axes = plt.subplots(2 * rows, n, figsize=(1.9 * n, 1.9 * 2 * rows), dpi=110, squeeze=False)
    shown = None
    for r in range(rows):
        for j in range(n):
            top, bottom = axes[2 * r, j], axes[2 * r + 1, j]
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
            if not masks[r, j]:
                top.axis("off")
                bottom.axis("off")
                continue
            with Image.open(images[r][j]) as im:
                rgb = np.asarray(im.convert("RGB").resize((size, size)))
            heat = np.asarray(Image.fromarray(alphas[r, j].astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))
            top.imshow(rgb)
            top.set_title(captions[r][j], fontsize=7)
            bottom.imshow(rgb)
            shown = bottom.imshow(heat, cmap="viridis", alpha=0.6, vmin=0.0, vmax=vmax)
    axes[0, 0].set_ylabel("target", fontsize=8)
    fig.suptitle("Co-attention maps (eq. 5, 8): target (first column) and its metadata neighbours", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    if shown is not None:
        bar = fig.add_axes((0.93, 0.1, 0.015, 0.8))
        fig.colorbar(shown, cax=bar).set_label("alpha x P (1 = uniform)", fontsize=8)
    fig.savefig(out)
    plt.close(fig)


@torch.no_grad()
def coattention_maps(model, inputs: tuple[torch.Tensor, ...], height: int, width: int) -> np.ndarray:
    """alpha of every node times P (1 = uniform attention): (B, N, H, W)."""
    phi, beta, y, mask = inputs
    _, alpha = model.node_features(phi, beta, y, mask)  # (B, N, P)
    return (alpha * alpha.shape[-1]).reshape(alpha.shape[0], alpha.shape[1], height, width).numpy()
