"""The `lemmatise` stage: raw metadata -> a de-duplicated set of vocabulary terms per image.

Section 4.1 of the paper: tokenise and lemmatise the metadata, remove duplicates, keep the most
common terms (|T| = `lemmatise.vocab_size`), drop images left without metadata or labels.

- tokens: lower-cased alphabetic runs (NLTK RegexpTokenizer's rule, run by polars), so "Sea Side" -> sea, side and
  "john_smith123" -> john, smith; digits-only junk such as "2008" disappears;
- lemmas: NLTK's WordNet lemmatiser, as a noun first and, when that leaves the word unchanged,
  as a verb ("dogs" -> dog, "geese" -> goose, "running" -> run); each distinct token is
  lemmatised once, not each occurrence;
- stop words: gensim's English list (no download needed), applied before and after lemmatising,
  plus tokens shorter than two letters;
- vocabulary: the `vocab_size` terms found in most images (ties: alphabetical).
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass

import polars as pl

from pipeline.errors import MangoError

log = logging.getLogger(__name__)

TOKEN_PATTERN = r"[a-z]+"
# Raw metadata fields carried to metadata.parquet as an extra list column of lightly normalised
# values (lower case, single spaces), for the hierarchy search's `neighbours.partition`.
PARTITION_FIELDS = ("groups",)


def stop_words() -> frozenset[str]:
    from gensim.parsing.preprocessing import STOPWORDS

    return frozenset(STOPWORDS)


@functools.lru_cache(maxsize=1)
def wordnet():
    """NLTK's WordNet reader, without the OMW sense-key self-mapping (map_wn) that NLTK 3.10 runs
    on every load (~8 s here) and that lemmatising never uses. Same data, same `_morphy`."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _LemmaReader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None

    for where in ("corpora/wordnet.zip/wordnet/", "corpora/wordnet"):
        try:
            root = nltk.data.find(where)
            break
        except LookupError:
            continue
    else:
        raise MangoError("NLTK WordNet data is missing: run `make setup` (or `python scripts/install_nltk_data.py`)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": we pass no OMW
        return _LemmaReader(root, None)


def lemma_table(tokens: list[str]) -> dict[str, str]:
    """Map each distinct token to its lemma: WordNetLemmatizer's rule (the shortest WordNet lemma),
    as a noun first and, when that leaves the token unchanged, as a verb."""
    wn = wordnet()

    def lemmatize(word: str, pos: str) -> str:
        lemmas = wn._morphy(word, pos)
        return min(lemmas, key=len) if lemmas else word

    table = {}
    for tok in tokens:
        noun = lemmatize(tok, "n")
        table[tok] = noun if noun != tok else lemmatize(tok, "v")
    return table


def partition_lists(metadata_raw: pl.DataFrame, field: str) -> pl.DataFrame:
    """image_id, <field>: each image's distinct values of a raw field (e.g. its group titles), sorted,
    lower-cased, trimmed, inner white space collapsed to one space; empty values dropped."""
    values = pl.col("text").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return (
        metadata_raw.filter(pl.col("field") == field)
        .select("image_id", values.alias(field))
        .filter(pl.col(field).str.len_chars() > 0)
        .unique()
        .group_by("image_id").agg(pl.col(field).sort())
    )


def raw_terms(metadata_raw: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The distinct (image_id, term) pairs of raw metadata rows (image_id, field, text): lower-cased
    alphabetic tokens, stop words and one-letter tokens dropped, WordNet-lemmatised (`lemma_table`),
    dropped again if the lemma is a stop word or one letter; and the number of distinct tokens.
    The one text path of `lemmatise` and of `mango annotate`."""
    stop = stop_words()
    # The tokens of nltk's RegexpTokenizer(TOKEN_PATTERN) (a findall of the pattern), found by polars
    # in native code instead of a Python call per row (tests/text/test_lemmatise_fast.py checks they agree).
    tokens = metadata_raw.select(
        "image_id",
        pl.col("text").str.to_lowercase().str.extract_all(TOKEN_PATTERN).alias("token"),
    ).explode("token").drop_nulls("token")
    tokens = tokens.filter((pl.col("token").str.len_chars() >= 2) & ~pl.col("token").is_in(list(stop)))
    distinct = tokens["token"].unique().sort().to_list()
    table = lemma_table(distinct)
    log.info("lemmatise: %d raw items, %d tokens, %d distinct tokens lemmatised", metadata_raw.height, tokens.height, len(distinct))
    terms = (
        tokens.with_columns(pl.col("token").replace_strict(table, return_dtype=pl.String).alias("term"))
        .filter((pl.col("term").str.len_chars() >= 2) & ~pl.col("term").is_in(list(stop)))
        .select("image_id", "term")
        .unique()
    )
    return terms, len(distinct)


def known_terms(terms: pl.DataFrame, vocabulary: pl.Series) -> pl.DataFrame:
    """image_id, terms: each image's terms (from `raw_terms`) that are in the vocabulary, sorted;
    images without any are absent."""
    kept = terms.filter(pl.col("term").is_in(vocabulary.implode()))
    return kept.group_by("image_id").agg(pl.col("term").sort().alias("terms"))


@dataclass
class LemmatiseResult:
    metadata: pl.DataFrame  # METADATA_SCHEMA
    vocab: pl.DataFrame  # VOCAB_SCHEMA
    stats: dict


def lemmatise(images: pl.DataFrame, labels: pl.DataFrame, metadata_raw: pl.DataFrame, vocab_size: int) -> LemmatiseResult:
    """Terms per image from raw metadata; images without terms or labels are dropped and counted."""
    terms, distinct = raw_terms(metadata_raw)
    vocab = (
        terms.group_by("term").agg(pl.len().cast(pl.UInt32).alias("images"))
        .sort(["images", "term"], descending=[True, False])
        .head(vocab_size)
        .with_row_index("rank", offset=1)
        .select("term", "images", pl.col("rank").cast(pl.UInt32))
    )
    per_image = known_terms(terms, vocab["term"])
    label_cols = [c for c in labels.columns if c != "image_id"]
    has_label = labels.select("image_id", pl.sum_horizontal(label_cols).alias("n_labels"))
    table_all = (
        images.select("image_id", "split")
        .join(per_image, on="image_id", how="left", maintain_order="left")
        .join(has_label, on="image_id", how="left", maintain_order="left")
    )
    no_meta = table_all["terms"].is_null() | (table_all["terms"].list.len() == 0)
    no_label = table_all["n_labels"].fill_null(0) == 0
    metadata = table_all.filter(~no_meta & ~no_label).select("image_id", "split", "terms")
    for name in PARTITION_FIELDS:  # only when the dataset has that field: the schema is otherwise unchanged
        if (metadata_raw["field"] == name).any():
            metadata = metadata.join(partition_lists(metadata_raw, name), on="image_id", how="left",
                                     maintain_order="left").with_columns(pl.col(name).fill_null([]))
    if metadata.height == 0:
        raise MangoError("lemmatise: no image has both metadata terms and labels; check dataset.root and lemmatise.vocab_size")
    stats = {
        "images_in": images.height,
        "dropped_no_metadata": int(no_meta.sum()),
        "dropped_no_labels": int((no_label & ~no_meta).sum()),
        "dropped_no_labels_total": int(no_label.sum()),
        "images_out": metadata.height,
        "train": int((metadata["split"] == "train").sum()),
        "test": int((metadata["split"] == "test").sum()),
        "distinct_tokens": distinct,
        "distinct_terms": int(terms["term"].n_unique()),
        "vocab_size": vocab.height,
        "mean_terms_per_image": float(metadata["terms"].list.len().mean()),
    }
    log.info(
        "lemmatise: kept %d of %d images (dropped %d without metadata, %d more without labels), vocabulary %d terms",
        stats["images_out"], stats["images_in"], stats["dropped_no_metadata"], stats["dropped_no_labels"], stats["vocab_size"],
    )
    return LemmatiseResult(metadata=metadata, vocab=vocab, stats=stats)
