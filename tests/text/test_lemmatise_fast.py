"""lemmatise tokenises with polars' str.extract_all(TOKEN_PATTERN) instead of calling NLTK's
RegexpTokenizer once per row: the two must give the same tokens for every input."""

from __future__ import annotations

import numpy as np
import polars as pl
from nltk.tokenize import RegexpTokenizer

from pipeline.bench.data import raw_metadata_frames
from pipeline.text.lemmatise import TOKEN_PATTERN, lemmatise

TRICKY = [
    "Sea Side", "john_smith123", "2008", "", "   ", "a", "ÉTÉ à Paris", "straße", "İstanbul", "ǅemal",
    "ﬁre ﬂy", "\u212a\u212bmart", "naïve café", "don't stop-me", "x\ny\tz", "tag,tag;TAG", "🐶dogs🐶",
    "ΣΊΣΥΦΟΣ", "ÀB\u0301C", "mIxEd CaSe WoRdS", "zz" * 200, "\u00a0nbsp\u00a0", "αβγ abc", "ÿ", "\x00nul",
]


def both_ways(texts: list[str | None]) -> tuple[list, list]:
    lower = pl.Series("text", texts, dtype=pl.String).str.to_lowercase()
    fast = lower.str.extract_all(TOKEN_PATTERN).to_list()
    tokenizer = RegexpTokenizer(TOKEN_PATTERN)
    slow = [None if t is None else tokenizer.tokenize(t) for t in lower.to_list()]
    return fast, slow


def test_tricky_strings_tokenise_identically():
    fast, slow = both_ways(TRICKY + [None])
    assert fast == slow
    assert fast[0] == ["sea", "side"] and fast[1] == ["john", "smith"] and fast[2] == [] and fast[-1] is None


def test_random_unicode_strings_tokenise_identically():
    rng = np.random.default_rng(0)
    alphabet = list("abcxyzABCXYZ019 _-'\t\n.,éÉßİıǅﬁ\u212aΣσς🐶\u0301\u00a0") + ["ǈ", "ŉ", "ẞ", "Ω"]
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 30))) for _ in range(3000)]
    fast, slow = both_ways(texts)
    assert fast == slow


def test_benchmark_metadata_tokenises_identically_and_lemmatises():
    images, labels, raw = raw_metadata_frames(2000, seed=3, tail=500)
    fast, slow = both_ways(raw["text"].to_list())
    assert fast == slow
    out = lemmatise(images, labels, raw, vocab_size=200)
    assert out.metadata.height > 0 and out.vocab.height == 200
    assert all(t.isalpha() and t.islower() for ts in out.metadata["terms"].to_list() for t in ts)
