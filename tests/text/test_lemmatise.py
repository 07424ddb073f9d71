import polars as pl

from pipeline.text.lemmatise import lemma_table, lemmatise


def test_lemmas_of_inflected_forms():
    table = lemma_table(["dogs", "geese", "running", "skies", "leaves", "churches", "flying", "sea"])
    assert table == {"dogs": "dog", "geese": "goose", "running": "run", "skies": "sky", "leaves": "leaf",
                     "churches": "church", "flying": "fly", "sea": "sea"}


def frames(raw: dict[str, list[str]], labels: dict[str, int]):
    ids = sorted(set(raw) | set(labels))
    images = pl.DataFrame({"image_id": ids, "path": ["x"] * len(ids), "split": ["train"] * len(ids)})
    lab = pl.DataFrame({"image_id": ids, "dog": [labels.get(i, 0) for i in ids]}).with_columns(pl.col("dog").cast(pl.UInt8))
    rows = [(i, t) for i, ts in raw.items() for t in ts]
    meta = pl.DataFrame({"image_id": [r[0] for r in rows], "field": ["tags"] * len(rows), "text": [r[1] for r in rows]},
                        schema={"image_id": pl.String, "field": pl.String, "text": pl.String})
    return images, lab, meta


def test_normalisation_dedup_and_drops():
    images, lab, meta = frames(
        {"a": ["Dogs", "DOG", "the", "Running Dogs"], "b": ["Sea Side", "of", "2008"], "c": ["and", "my"], "d": ["geese"]},
        {"a": 1, "b": 1, "c": 1, "d": 0},
    )
    out = lemmatise(images, lab, meta, vocab_size=100)
    terms = dict(zip(out.metadata["image_id"].to_list(), out.metadata["terms"].to_list()))
    assert terms == {"a": ["dog", "run"], "b": ["sea"]}  # case, plural, verb form, duplicates, stop words, digits
    assert out.stats["dropped_no_metadata"] == 1  # c: only stop words
    assert out.stats["dropped_no_labels"] == 1  # d: has terms but no label
    assert out.stats["images_out"] == 2


def test_vocab_keeps_most_frequent_terms():
    images, lab, meta = frames({"a": ["dog", "cat"], "b": ["dog", "bird"], "c": ["dog", "cat"], "d": ["zebra"]},
                               {"a": 1, "b": 1, "c": 1, "d": 1})
    out = lemmatise(images, lab, meta, vocab_size=2)
    assert out.vocab["term"].to_list() == ["dog", "cat"]
    assert out.vocab["images"].to_list() == [3, 2]
    assert out.stats["dropped_no_metadata"] == 1  # d's only term fell out of the vocabulary
    assert all(set(t) <= {"dog", "cat"} for t in out.metadata["terms"].to_list())
