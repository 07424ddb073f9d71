"""Visual attributes of captions (sections 3.2 and 4.1, MS-COCO): caption tokens, the attribute of
each token (its noun or adjective lemma, by WordNet's sense-tagged counts) and the most common
attributes. Semantic search (`pipeline.neighbours.semantic`) weighs their word vectors; the
definition of an attribute is in that module's docstring.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import polars as pl

from pipeline.errors import MangoError
from pipeline.text.lemmatise import TOKEN_PATTERN, stop_words, wordnet

log = logging.getLogger(__name__)

CAPTION_FIELD = "caption"  # metadata_raw.parquet rows of this field are the captions (MS-COCO)


@functools.lru_cache(maxsize=1)
def _tag_counts() -> dict[tuple[str, str], int]:
    """(lemma, part of speech) -> WordNet's sense-tagged frequency, summed over its senses.

    Read once from WordNet's index.sense (lines 'dog%1:05:00:: 02084071 1 42'; the digit after '%'
    is the part of speech, 5 = adjective satellite, counted as adjective).
    """
    pos_of = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
    counts: dict[tuple[str, str], int] = {}
    with wordnet().open("index.sense") as f:
        for line in f:
            key, _, _, tagged = line.split()
            lemma, _, rest = key.partition("%")
            pair = (lemma, pos_of[rest[0]])
            counts[pair] = counts.get(pair, 0) + int(tagged)
    return counts


def attribute_table(tokens: list[str]) -> dict[str, str]:
    """Map each token whose dominant WordNet part of speech is noun or adjective to its lemma.

    Dominance compares WordNet's sense-tagged counts of the noun + adjective readings with those of
    the verb + adverb readings; with no tagged counts at all, any noun or adjective reading makes an
    attribute. Other tokens are absent from the result.
    """
    wn = wordnet()
    tagged = _tag_counts()
    table = {}
    for tok in tokens:
        lemma: dict[str, str] = {}
        count = dict.fromkeys("navr", 0)
        for pos in "navr":
            forms = wn._morphy(tok, pos)  # WordNet base forms of tok in this part of speech
            if forms:
                lemma[pos] = min(forms, key=len)  # WordNetLemmatizer's choice
                count[pos] = sum(tagged.get((form, pos), 0) for form in forms)
        nominal, verbal = count["n"] + count["a"], count["v"] + count["r"]
        if not ({"n", "a"} & lemma.keys()) or nominal < verbal or (nominal == verbal and nominal > 0):
            continue
        pos = "n" if "n" in lemma and (count["n"] >= count["a"] or "a" not in lemma) else "a"
        table[tok] = lemma[pos]
    return table


@dataclass
class CaptionTokens:
    """The captions of the searched images, tokenised."""

    tokens: pl.DataFrame  # image_id, caption (row of the caption), token, attribute (null: none)
    sentences: list[list[str]]  # per caption: its tokens, attributes replaced by their lemma
    images: int  # images with at least one caption


def caption_tokens(metadata: pl.DataFrame, raw: pl.DataFrame, *, source: str = "metadata_raw") -> CaptionTokens:
    """Tokenise the captions (field 'caption' of raw) of the images of metadata and tag attributes."""
    for name in ("image_id", "field", "text"):
        if name not in raw.columns:
            raise MangoError(f"{source}: missing column '{name}' (columns present: {', '.join(raw.columns)})")
    captions = (
        raw.filter(pl.col("field") == CAPTION_FIELD)
        .join(metadata.select("image_id"), on="image_id", how="semi", maintain_order="left")
        .drop_nulls("text")
    )
    if captions.height == 0:
        fields = ", ".join(sorted(raw["field"].drop_nulls().unique().to_list())) or "none"
        raise MangoError(f"{source}: no '{CAPTION_FIELD}' rows for the images being searched (fields present: {fields}); "
                         "semantic search needs captions (MS-COCO); set neighbours.method: jaccard for tag metadata")
    stop = list(stop_words())
    tokens = (
        captions.with_row_index("caption")
        .select("image_id", "caption", pl.col("text").str.to_lowercase().str.extract_all(TOKEN_PATTERN).alias("token"))
        .explode("token").drop_nulls("token")
        .filter((pl.col("token").str.len_chars() >= 2) & ~pl.col("token").is_in(stop))
    )
    distinct = tokens["token"].unique().sort().to_list()
    table = attribute_table(distinct)
    attribute = pl.col("token").replace_strict(table, default=None, return_dtype=pl.String) if table else pl.lit(None, pl.String)
    tokens = tokens.with_columns(attribute.alias("attribute"))
    sentences = (
        tokens.group_by("caption", maintain_order=True)
        .agg(pl.coalesce("attribute", "token").alias("word"))["word"].to_list()
    )
    log.info("semantic: %d captions of %d images, %d tokens, %d distinct, %d of them visual attributes",
             captions.height, captions["image_id"].n_unique(), tokens.height, len(distinct), len(set(table.values())))
    return CaptionTokens(tokens=tokens, sentences=sentences, images=captions["image_id"].n_unique())


def select_attributes(tokens: pl.DataFrame, n_attributes: int, vocabulary=None) -> pl.DataFrame:
    """The n_attributes attributes found in most images (ties alphabetical): attribute, images.

    vocabulary: words that have a vector (None: every attribute is eligible).
    """
    counts = (
        tokens.drop_nulls("attribute").select("image_id", "attribute").unique()
        .group_by("attribute").agg(pl.len().alias("images"))
    )
    if vocabulary is not None:
        has = pl.Series([a in vocabulary for a in counts["attribute"].to_list()], dtype=pl.Boolean)
        missing = counts.filter(~has)
        if missing.height:
            top = missing.sort(["images", "attribute"], descending=[True, False]).head(5)
            log.info("semantic: %d attributes have no word vector and are skipped (most common: %s)",
                     missing.height, ", ".join(top["attribute"].to_list()))
        counts = counts.filter(has)
    return counts.sort(["images", "attribute"], descending=[True, False]).head(n_attributes)
