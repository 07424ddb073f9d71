"""Synthetic inputs at NUS-WIDE scale for the benchmarks (`mango bench neighbours|lemmatise`).

Both generators are deterministic by seed and shaped like NUS-WIDE after filtering (3,000 tags,
~10 per image, as in the paper's vocabulary): tag popularity follows a Zipf-Mandelbrot law,
p(rank) ∝ (rank + 30)^-1.05, so the most common tag is in roughly 8% of images, and the number
of tags per image is lognormal around the requested mean.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

ZIPF_SHIFT = 30.0
ZIPF_EXPONENT = 1.05
SIZE_SIGMA = 0.6  # lognormal spread of the tags per image


def zipf_popularity(vocab: int) -> np.ndarray:
    """(vocab,) Zipf-Mandelbrot probabilities of the tags, most popular first."""
    p = (np.arange(vocab, dtype=np.float64) + ZIPF_SHIFT) ** -ZIPF_EXPONENT
    return p / p.sum()


def set_sizes(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """(n,) int64 tags per image: lognormal with the given mean, at least 1."""
    mu = np.log(mean) - SIZE_SIGMA ** 2 / 2
    return np.maximum(1, np.rint(rng.lognormal(mu, SIZE_SIGMA, size=n))).astype(np.int64)


def zipf_tag_matrix(n: int, vocab: int = 3000, tags_per_image: float = 10.0, seed: int = 0) -> sp.csr_matrix:
    """(n, vocab) binary CSR tag matrix: each row draws its lognormal number of tags from the
    Zipf-Mandelbrot popularity (repeated draws merge, so rows average slightly fewer)."""
    rng = np.random.default_rng(seed)
    sizes = set_sizes(rng, n, tags_per_image)  # (n,)
    cols = rng.choice(vocab, size=int(sizes.sum()), p=zipf_popularity(vocab))  # (nnz,)
    rows = np.repeat(np.arange(n), sizes)
    X = sp.csr_matrix((np.ones(cols.size, dtype=np.int32), (rows, cols)), shape=(n, vocab))
    X.sum_duplicates()
    X.data[:] = 1
    return X


def splits(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """(n,) array of 'train' / 'test', a seeded random test_fraction of them 'test'."""
    rng = np.random.default_rng(seed + 1)
    return np.where(rng.random(n) < test_fraction, "test", "train")


# Word stems that WordNet knows, with regular inflections, for the raw-metadata generator.
_STEMS = (
    "dog cat bird horse cow sheep fish tree flower leaf sky cloud sun moon star sea lake river beach "
    "mountain hill rock sand snow rain storm road street car bus train boat ship plane bridge house "
    "building church tower castle city town village garden park field forest grass water window door "
    "light night sunset sunrise person child woman man girl boy friend family wedding party dance "
    "music concert guitar food fruit apple orange cake bread coffee book paper art painting statue "
    "museum shadow reflection colour portrait landscape animal insect butterfly bee spider duck goose "
    "swan eagle owl lion tiger bear wolf fox rabbit mouse deer monkey elephant zoo farm barn fence "
    "wall roof stone brick glass metal wood fire smoke ice wave shore island harbour port market shop "
    "restaurant kitchen table chair bed lamp clock toy ball game sport team player run walk jump "
    "swim fly climb ride drive sing play paint cook read write sleep smile laugh cry talk look"
).split()
_JUNK = ("img", "dsc", "photo", "pic", "canon", "nikon", "flickr", "the", "of", "and", "my", "in", "a")


def raw_metadata_frames(n: int, tags_per_image: float = 10.0, seed: int = 0, tail: int = 50_000
                        ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(images, labels, metadata_raw) frames as `prepare` writes them, with ~tags_per_image raw
    tag strings per image: inflected English words, multi-word tags, stop words and camera junk
    with digits (the popular part), then a long tail of `tail` rare made-up words; each tag is
    written in lower, Title or UPPER case. Every distinct token reaches the lemmatiser once, so
    the tail sets the lemmatiser's share of the cost."""
    rng = np.random.default_rng(seed)
    stems = np.array(_STEMS)
    endings = np.array(["", "", "", "s", "es", "ing", "ed"])  # "" most often: the plain word
    common = np.concatenate([
        np.char.add(np.repeat(stems, endings.size), np.tile(endings, stems.size)),  # "dogs", "running"
        np.char.add(np.char.add(rng.choice(stems, 400), " "), rng.choice(stems, 400)),  # "sea side"
        np.char.add(rng.choice(np.array(_JUNK), 300), rng.integers(0, 10_000, 300).astype(str)),  # "img2008"
        np.array(_JUNK),
    ])
    rng.shuffle(common)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    rare = np.array(["".join(w) for w in rng.choice(letters, size=(tail, 7))])  # (tail,) made-up words
    vocab = pl.Series(np.concatenate([common, rare]))  # (V,) most popular first
    forms = pl.concat([vocab, vocab.str.to_titlecase(), vocab.str.to_uppercase()])  # (3V,)
    sizes = set_sizes(rng, n, tags_per_image)  # (n,)
    picks = rng.choice(vocab.len(), size=int(sizes.sum()), p=zipf_popularity(vocab.len()))  # (N,)
    case = rng.choice(3, size=picks.size, p=[0.65, 0.2, 0.15])  # lower, Title, UPPER
    ids = pl.Series(np.arange(n)).cast(pl.String).str.replace(r"^", "im")
    images = pl.DataFrame({"image_id": ids, "path": ids + ".jpg", "split": splits(n, 0.5, seed)})
    labels = pl.DataFrame({"image_id": ids, **{f"label{c}": (rng.random(n) < 0.3).astype(np.uint8) for c in range(5)}})
    metadata_raw = pl.DataFrame({"image_id": ids.gather(np.repeat(np.arange(n), sizes)), "field": "tags",
                                 "text": forms.gather(case * vocab.len() + picks)},
                                schema={"image_id": pl.String, "field": pl.String, "text": pl.String})
    return images, labels, metadata_raw
