"""The pixels of the synthetic world: one RGB image per plan, and its JPEG bytes.

Every label has a visual signature (`vocabulary.SIGNATURES`): a hue of its own drawn as a shape
of its own, on a random textured, nearly grey background. "Easy" images show large, saturated,
unoccluded objects. Hard images (a `hard_fraction` of them, spread over all topics) show the
same objects tiny, faded towards the background, partly covered by noise patches, under heavy
coloured noise and among grey distractor shapes: the label is hard to read from that image
alone, while its neighbours (same topic, mostly easy) show it clearly.

Each image's pixels are drawn from the Generator it is given (`write` seeds one per image).
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from pipeline.data.synthetic.vocabulary import SHAPES, SIGNATURES, choice
from pipeline.data.synthetic.world import ImagePlan

JPEG_QUALITY = 90
RELEVANT_RADIUS = 0.17  # an easy object this large (radius / image size) makes the image `_r1`


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((hue % 360) / 360.0, sat, val), dtype=np.float32) * 255.0


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]) -> None:
    """Draw `shape` centred at (cx, cy) with radius r (pixels)."""
    box = (cx - r, cy - r, cx + r, cy + r)
    w = max(1, round(r * 0.4))
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=fill)
    elif shape == "triangle":
        draw.regular_polygon((cx, cy, r), 3, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=w)
    elif shape == "plus":
        draw.rectangle((cx - r, cy - 0.22 * r, cx + r, cy + 0.22 * r), fill=fill)
        draw.rectangle((cx - 0.22 * r, cy - r, cx + 0.22 * r, cy + r), fill=fill)
    elif shape == "star":
        pts = [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
                cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
        draw.polygon(pts, fill=fill)
    elif shape == "hexagon":
        draw.regular_polygon((cx, cy, r), 6, fill=fill)
    elif shape == "halfdisc":
        draw.pieslice((cx - r, cy - 0.5 * r, cx + r, cy + 1.5 * r), 180, 360, fill=fill)
    elif shape == "stripes":
        for k in range(3):
            y = cy - r + k * 0.8 * r
            draw.rectangle((cx - r, y, cx + r, y + 0.4 * r), fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)], fill=fill)
    elif shape == "xcross":
        draw.line((cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r), fill=fill, width=w)
        draw.line((cx - 0.8 * r, cy + 0.8 * r, cx + 0.8 * r, cy - 0.8 * r), fill=fill, width=w)
    elif shape == "frame":
        draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), outline=fill, width=w)
    elif shape == "chevron":
        draw.polygon([(cx - r, cy - 0.5 * r), (cx, cy + 0.3 * r), (cx + r, cy - 0.5 * r),
                      (cx + r, cy + 0.2 * r), (cx, cy + r), (cx - r, cy + 0.2 * r)], fill=fill)
    else:  # pragma: no cover - SIGNATURES and SHAPES are fixed above
        raise ValueError(f"unknown shape {shape}")


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A nearly grey textured background (size, size, 3) float32, and its base colour."""
    base = _rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.12), rng.uniform(0.35, 0.75))
    g = int(rng.integers(3, 8))
    low = rng.standard_normal((g, g)).astype(np.float32)
    tex = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC))
    fine = rng.standard_normal((size, size), dtype=np.float32)
    shade = rng.uniform(10, 28) * tex + rng.uniform(2, 6) * fine
    return base[None, None, :] + shade[:, :, None], base


def render_image(plan: ImagePlan, size: int, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Draw one image; returns it and the labels it shows large and clear (for `_r1`)."""
    bg, base = _background(rng, size)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    n_distractors = int(rng.integers(3, 8)) if plan.hard else int(rng.integers(0, 3))
    for _ in range(n_distractors):  # grey shapes of every kind: shape alone is not the label
        grey = int(base.mean() + rng.choice([-1, 1]) * rng.uniform(20, 70) * (0.5 if plan.hard else 1.0))
        r = size * (rng.uniform(0.03, 0.07) if plan.hard else rng.uniform(0.06, 0.16))
        _draw_shape(draw, choice(rng, SHAPES), rng.uniform(r, size - r), rng.uniform(r, size - r), r, (grey,) * 3)
    relevant, objects = [], []
    for label in plan.labels:
        sig = SIGNATURES[label]
        n_inst = 1 if plan.hard else 1 + int(rng.random() < 0.3)
        for k in range(n_inst):
            hue = sig.hue + rng.uniform(-5, 5)
            colour = _rgb(hue, rng.uniform(0.8, 1.0), rng.uniform(0.75, 1.0))
            if plan.hard:
                r = size * rng.uniform(0.03, 0.06)
                colour = base + rng.uniform(0.15, 0.35) * (colour - base)  # faded towards the background
            else:
                r = size * (rng.uniform(0.13, 0.26) if k == 0 else rng.uniform(0.08, 0.14))
                if k == 0 and r >= RELEVANT_RADIUS * size:
                    relevant.append(label)
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            _draw_shape(draw, sig.shape, cx, cy, r, tuple(int(c) for c in np.clip(colour, 0, 255)))
            objects.append((cx, cy, r))
    arr = np.asarray(img, dtype=np.float32).copy()
    if plan.hard:  # noise patches over most objects, heavy coloured noise
        for cx, cy, r in objects:
            if rng.random() < 0.6:
                w, h = (rng.uniform(0.8, 1.6, 2) * r).astype(int) + 1
                x0 = int(np.clip(cx - w / 2 + rng.uniform(-0.5, 0.5) * r, 0, size - 1))
                y0 = int(np.clip(cy - h / 2 + rng.uniform(-0.5, 0.5) * r, 0, size - 1))
                patch = arr[y0:y0 + h, x0:x0 + w]
                patch[...] = base + 35.0 * rng.standard_normal(patch.shape, dtype=np.float32)
        sigma = rng.uniform(18, 30)
    else:
        sigma = rng.uniform(3, 8)
    arr += np.float32(sigma) * rng.standard_normal(arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), relevant


def jpeg_bytes(img: Image.Image) -> bytes:
    """`img` encoded as a JPEG file at `JPEG_QUALITY`."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
