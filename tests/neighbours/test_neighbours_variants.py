"""The paper's two other neighbour searches (section 3.2): hierarchy search and semantic search.

Hierarchy: exact Jaccard within the groups of an image, against a brute-force reference.
Semantic: caption attributes -> weighted word2vec vectors -> exact cosine top-k, with a word2vec
file written here (so the expected neighbours follow from the vectors), and the trained fallback.
Both: the `mango neighbours` options, the params and dvc.yaml wiring, and the user errors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.config import NeighboursParams
from pipeline.errors import MangoError
from pipeline.neighbours.hierarchy import partition_matrix, partitioned_topk, search_neighbours_partitioned
from pipeline.text.lemmatise import lemmatise
from pipeline.neighbours.jaccard import search_neighbours
from pipeline.neighbours.common import brute_force_topk
from tests.helpers import by_image, frame, to_csr
from pipeline.schemas import NEIGHBOURS_SCHEMA
from stages.cli import app

ROOT = Path(__file__).resolve().parents[2]


def brute_force_groups(sets: list[set], groups: list[set], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference (`brute_force_topk`): candidates share a group with i (any row when i has none)."""
    def pool(i: int) -> list[int]:
        return [j for j in range(len(sets)) if groups[i] & groups[j]] if groups[i] else list(range(len(sets)))

    return brute_force_topk(to_csr(sets, 30), k, candidates=pool)


def random_world(seed: int, n: int) -> tuple[list[set], list[set]]:
    """Zipf-like term sets (many ties, some empty); 0-3 groups of 10 with uneven sizes, some of 1-2 members."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 31)
    sets = [set(rng.choice(30, size=rng.integers(0, 7), p=p / p.sum()).tolist()) for _ in range(n)]
    q = 1.0 / np.arange(1, 11) ** 2  # groups 7-9 get one or two members
    groups = [set(rng.choice(10, size=rng.choice([0, 1, 1, 2, 3]), replace=False, p=q / q.sum()).tolist())
              for _ in range(n)]
    return sets, groups


# --- hierarchy search ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_hierarchy_matches_brute_force(seed):
    sets, groups = random_world(seed, n=160)
    sizes = np.bincount([g for gs in groups for g in gs], minlength=10)
    assert sum(not g for g in groups) > 10 and sum(len(g) > 1 for g in groups) > 10  # no-group and multi-group images
    assert ((sizes > 0) & (sizes < 6)).any()  # a group with fewer than k members
    ref_idx, ref_score = brute_force_groups(sets, groups, 6)
    for block_size in (1, 7, 1000):
        idx, score = partitioned_topk(to_csr(sets, 30), to_csr(groups, 10), k=6, block_size=block_size)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(score, ref_score)  # bit-identical, nan where padded
    assert (ref_idx[:, -1] == -1).any() and (ref_idx[:, -1] >= 0).any()


def test_hierarchy_without_groups_or_in_one_group_is_the_plain_search():
    sets, _ = random_world(5, n=90)
    df = frame([f"im{i}" for i in range(90)], ["train"] * 50 + ["test"] * 40, [[f"t{t}" for t in s] for s in sets],
               groups=[[]] * 45 + [None] * 45)
    plain = search_neighbours(df.drop("groups"), k=5)
    assert search_neighbours_partitioned(df, k=5, partition="groups").equals(plain)
    everyone = df.with_columns(pl.lit(["all"], dtype=pl.List(pl.String)).alias("groups"))
    assert search_neighbours_partitioned(everyone, k=5, block_size=8, partition="groups").equals(plain)


def test_hierarchy_hand_built_groups_fallback_and_splits():
    df = frame(
        ["a", "b", "c", "d", "e", "f", "g"],
        ["train"] * 5 + ["test"] * 2,
        [["x", "y"], ["x"], ["x", "y"], ["x", "y"], ["x", "y"], ["x", "y"], ["x"]],
        groups=[["beach"], ["beach", "dogs"], ["dogs"], [], ["cats"], ["beach"], []],
    )
    out = search_neighbours_partitioned(df, k=3, block_size=2, partition="groups", source="meta.parquet")
    assert out.schema == pl.Schema(NEIGHBOURS_SCHEMA)
    assert by_image(out) == {
        "a": [("b", 0.5)],  # only its beach group: c, d (identical sets) are outside it
        "b": [("a", 0.5), ("c", 0.5)],  # the union of beach and dogs
        "c": [("b", 0.5)],
        "d": [("a", 1.0), ("c", 1.0), ("e", 1.0)],  # no group: the whole split, ties in input order
        # e: alone in its group -> no neighbour; f: alone in 'beach' within the test split (the train
        # members do not count, and g, in no group, is no member) -> no neighbour
        "g": [("f", 0.5)],  # no group: the whole test split
    }


def test_partition_column_as_one_string_per_image_and_light_normalisation():
    G = partition_matrix(pl.Series("groups", ["b", None, "a", "", "b"]))
    assert G.toarray().tolist() == [[0, 1], [0, 0], [1, 0], [0, 0], [0, 1]]  # columns: sorted names; null, "" = none
    G = partition_matrix(pl.Series("groups", [["b", "a", "b"], [], None], dtype=pl.List(pl.String)))
    assert G.toarray().tolist() == [[1, 1], [0, 0], [0, 0]]


@pytest.mark.parametrize("df, partition, message", [
    (frame(["a"], ["train"], [["x"]]), "groups", "partition column 'groups' not found \\(columns present: image_id, split, terms\\)"),
    (frame(["a"], ["train"], [["x"]]).with_columns(groups=pl.lit(3)), "groups", "partition column 'groups' has type Int32"),
    (frame(["a"], ["train"], [["x"]]), "terms", "partition column must not be one of image_id, split, terms"),
])
def test_hierarchy_rejects_bad_partition(df, partition, message):
    with pytest.raises(MangoError, match=f"^meta.parquet: {message}"):
        search_neighbours_partitioned(df, k=3, partition=partition, source="meta.parquet")


def test_lemmatise_carries_groups_only_when_the_dataset_has_them():
    ids = ["a", "b", "c"]
    images = pl.DataFrame({"image_id": ids, "path": ["x"] * 3, "split": ["train"] * 3})
    labels = pl.DataFrame({"image_id": ids, "dog": [1, 1, 1]}).with_columns(pl.col("dog").cast(pl.UInt8))
    tags = pl.DataFrame({"image_id": ids, "field": ["tags"] * 3, "text": ["dog", "dogs", "Dog"]})
    plain = lemmatise(images, labels, tags, vocab_size=10).metadata
    assert plain.columns == ["image_id", "split", "terms"]
    groups = pl.DataFrame({"image_id": ["a", "a", "a", "b"], "field": ["groups"] * 4,
                           "text": ["  Dog   Lovers ", "dog lovers", "Beach", "  "]})
    out = lemmatise(images, labels, pl.concat([tags, groups]), vocab_size=10).metadata
    assert out.columns == ["image_id", "split", "terms", "groups"]
    assert out["groups"].to_list() == [["beach", "dog lovers"], [], []]  # b's blank title is no group


# --- semantic search ----------------------------------------------------------------------------

CAPTIONS = {  # one attribute each (stop words and verbs aside), so an image's vector is its word's
    "a": ["A dog is sitting."], "b": ["The cat."], "c": ["Two cars"], "d": ["a truck parked"],
    "e": ["A dog"], "f": ["a cat"],
}
VECTORS = {"dog": [1.0, 0.0, 0.0], "cat": [0.8, 0.6, 0.0], "car": [0.0, 1.0, 0.0], "truck": [0.0, 0.8, 0.6],
           "sitting": [0.0, 0.0, 1.0]}


def write_word2vec(path: Path, vectors: dict[str, list[float]]) -> Path:
    dim = len(next(iter(vectors.values())))
    lines = [f"{len(vectors)} {dim}"] + [f"{w} " + " ".join(repr(x) for x in v) for w, v in vectors.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def caption_frames(captions=CAPTIONS, splits=None):
    ids = list(captions)
    splits = splits or ["train"] * 4 + ["test"] * 2
    meta = frame(ids, splits, [["x"]] * len(ids))
    rows = [(i, c) for i, cs in captions.items() for c in cs]
    raw = pl.DataFrame({"image_id": [r[0] for r in rows], "field": ["caption"] * len(rows), "text": [r[1] for r in rows]})
    return meta, raw


def test_attributes_are_nouns_and_adjectives_by_their_dominant_wordnet_sense():
    from pipeline.text.attributes import attribute_table

    table = attribute_table(["dogs", "red", "larger", "kitchen", "sitting", "holding", "riding", "giraffes", "xyzzy"])
    assert table == {"dogs": "dog", "red": "red", "larger": "large", "kitchen": "kitchen", "giraffes": "giraffe"}


def test_semantic_uses_the_given_word2vec(tmp_path):
    from pipeline.neighbours.semantic import search_semantic

    meta, raw = caption_frames()
    out = search_semantic(meta, raw, k=2, word2vec=write_word2vec(tmp_path / "w.txt", VECTORS))
    assert out.schema == pl.Schema(NEIGHBOURS_SCHEMA)
    got = by_image(out)
    assert [n for n, _ in got["a"]] == ["b", "c"]  # dog: cat (0.8), then car (0.0) before truck (0.0) by input order
    assert got["a"][0][1] == pytest.approx(0.8, abs=1e-6)  # score = cosine of the two (float32) word vectors
    assert got["c"] == [("d", pytest.approx(0.8)), ("b", pytest.approx(0.6))]  # car: truck, then cat
    assert got["e"] == [("f", pytest.approx(0.8))] and got["f"] == [("e", pytest.approx(0.8))]  # test within test
    # Moving "cat" next to "truck" moves b's neighbours: the vectors of the file are the ones used.
    moved = dict(VECTORS, cat=[0.0, 0.8, 0.6])
    got = by_image(search_semantic(meta, raw, k=2, word2vec=write_word2vec(tmp_path / "moved.txt", moved)))
    assert got["b"][0] == ("d", pytest.approx(1.0))
    # The binary format gives the same answer (detected from the content, not the name).
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=3)
    kv.add_vectors(list(VECTORS), np.array(list(VECTORS.values()), dtype=np.float32))
    kv.save_word2vec_format(str(tmp_path / "w.txt.bin"), binary=True)
    assert search_semantic(meta, raw, k=2, word2vec=tmp_path / "w.txt.bin").equals(out)


def test_semantic_attribute_count_and_missing_vectors(tmp_path, caplog):
    from pipeline.neighbours.semantic import search_semantic

    meta, raw = caption_frames()
    w2v = write_word2vec(tmp_path / "w.txt", {w: v for w, v in VECTORS.items() if w != "truck"})
    caplog.set_level("INFO", logger="pipeline")
    got = by_image(search_semantic(meta, raw, k=3, attributes=2, word2vec=w2v))
    assert "1 attributes have no word vector and are skipped (most common: truck)" in caplog.text
    # Kept: cat and dog (two images each; car has one); c (car) and d (truck) have no kept attribute.
    assert set(got) == {"a", "b", "e", "f"} and got["a"] == [("b", pytest.approx(0.8))]


def test_image_vectors_are_tfidf_weighted_unit_word_vectors():
    from pipeline.neighbours.semantic import image_vectors
    from pipeline.text.attributes import caption_tokens, select_attributes

    meta, raw = caption_frames({"p": ["dog dog", "cat"], "q": ["dog"], "r": ["car"]}, ["train"] * 3)
    ct = caption_tokens(meta, raw)
    chosen = select_attributes(ct.tokens, 10)
    assert chosen.rows() == [("dog", 2), ("car", 1), ("cat", 1)]  # images per attribute, ties alphabetical
    kv = {"dog": np.array([2.0, 0.0]), "cat": np.array([0.0, 3.0]), "car": np.array([1.0, 1.0])}
    V = image_vectors(meta["image_id"], ct.tokens, chosen, kv, ct.images)
    idf = {"dog": np.log(4 / 3) + 1, "cat": np.log(4 / 2) + 1}  # N = 3 images; df: dog 2, cat 1
    np.testing.assert_allclose(V[0], [2 * idf["dog"], 1 * idf["cat"]])  # tf 2 x unit dog + tf 1 x unit cat
    np.testing.assert_allclose(V[1], [idf["dog"], 0.0])


def test_cosine_topk_exact_with_duplicates_and_empty_rows():
    from pipeline.neighbours.semantic import cosine_topk

    rng = np.random.default_rng(0)
    V = rng.normal(size=(120, 6)).astype(np.float32)
    V[60:90] = V[0]  # thirty identical rows: ties far past k, re-searched with more candidates
    V[90:95] = 0.0  # no vector: no neighbours, nobody's neighbour
    V64 = V.astype(np.float64)
    U = V64 / np.maximum(np.linalg.norm(V64, axis=1, keepdims=True), 1e-300)  # (n, D) unit rows, zero rows stay 0
    for block_size in (7, 500):
        idx, score = cosine_topk(V, k=5, block_size=block_size)
        for i in range(120):
            if 90 <= i < 95:
                assert (idx[i] == -1).all()
                continue
            sims = [(-np.cumsum(U[i] * U[j])[-1], j) for j in range(120) if j != i and not 90 <= j < 95]
            expected = sorted(sims)[:5]
            assert idx[i].tolist() == [j for _, j in expected], i
            np.testing.assert_allclose(score[i], [-s for s, _ in expected], rtol=0, atol=1e-12)
    assert idx[0].tolist() == [60, 61, 62, 63, 64] and (score[0] == score[0, 0]).all()  # ties by input order


def test_semantic_trains_word2vec_when_none_is_given(caplog):
    from pipeline.neighbours.semantic import search_semantic

    meta, raw = caption_frames()
    caplog.set_level("WARNING", logger="pipeline.neighbours.semantic")
    first = search_semantic(meta, raw, k=2)
    assert "neighbours.word2vec is empty: training gensim Word2Vec on the 6 captions" in caplog.text
    assert first.height == 10 and first.equals(search_semantic(meta, raw, k=2))  # seeded, one worker: reproducible
    assert (first["score"].abs() <= 1.0 + 1e-9).all()


@pytest.mark.parametrize("case, message", [
    ("no_captions", "no 'caption' rows for the images being searched \\(fields present: tags\\)"),
    ("missing_file", "neighbours.word2vec: file not found: '.*nope.txt'"),
    ("not_word2vec", "not a word2vec file"),
])
def test_semantic_errors(tmp_path, case, message):
    from pipeline.neighbours.semantic import search_semantic

    meta, raw = caption_frames()
    word2vec = None
    if case == "no_captions":
        raw = raw.with_columns(pl.lit("tags").alias("field"))
    elif case == "missing_file":
        word2vec = tmp_path / "nope.txt"
    else:
        word2vec = tmp_path / "junk.txt"
        word2vec.write_text("dog 1 2 3\n")
    with pytest.raises(MangoError, match=message):
        search_semantic(meta, raw, k=2, word2vec=word2vec)


# --- command, params, dvc.yaml ------------------------------------------------------------------

def test_cli_partition_and_semantic_options(tmp_path):
    df = frame(["a", "b", "c", "d"], ["train"] * 4, [["x"], ["x"], ["x"], ["x"]], groups=[["g"], ["g"], ["h"], []])
    src, out = tmp_path / "meta.parquet", tmp_path / "out" / "neighbours.parquet"
    df.write_parquet(src)
    runner = CliRunner()
    result = runner.invoke(app, ["neighbours", str(src), str(out), "--k", "3", "--partition", "groups"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).equals(search_neighbours_partitioned(df, k=3, partition="groups"))
    assert by_image(pl.read_parquet(out))["a"] == [("b", 1.0)]
    result = runner.invoke(app, ["neighbours", str(src), str(out), "--k", "3"])  # the default: unchanged
    assert result.exit_code == 0 and pl.read_parquet(out).equals(search_neighbours(df.drop("groups"), k=3))

    meta, raw = caption_frames()
    meta.write_parquet(src)
    raw.write_parquet(tmp_path / "raw.parquet")
    w2v = write_word2vec(tmp_path / "w.txt", VECTORS)
    result = runner.invoke(app, ["neighbours", str(src), str(out), "--k", "2", "--method", "semantic",
                                 "--raw", str(tmp_path / "raw.parquet"), "--word2vec", str(w2v), "--attributes", "256"])
    assert result.exit_code == 0, result.output
    from pipeline.neighbours.semantic import search_semantic

    assert pl.read_parquet(out).equals(search_semantic(meta, raw, k=2, word2vec=w2v))
    assert [p.name for p in out.parent.iterdir()] == ["neighbours.parquet"]


@pytest.mark.parametrize("args, message", [
    (["--partition", "groups"], "partition column 'groups' not found"),
    (["--method", "semantic"], "--method semantic needs --raw"),
    (["--method", "semantic", "--raw", "RAW", "--partition", "groups"], "applies to --method jaccard only"),
    (["--method", "semantic", "--raw", "RAW", "--word2vec", "missing.bin"], "neighbours.word2vec: file not found"),
    (["--method", "cosine"], "--method must be jaccard or semantic"),
])
def test_cli_errors(tmp_path, args, message):
    src, out = tmp_path / "meta.parquet", tmp_path / "neighbours.parquet"
    frame(["a", "b"], ["train"] * 2, [["x"], ["x"]]).write_parquet(src)
    caption_frames()[1].write_parquet(tmp_path / "raw.parquet")
    args = [str(tmp_path / "raw.parquet") if a == "RAW" else a for a in args]
    result = CliRunner().invoke(app, ["neighbours", str(src), str(out), "--k", "2", *args])
    assert isinstance(result.exception, MangoError) and message in str(result.exception)
    assert not out.exists()


def test_cli_error_is_one_line_without_traceback(tmp_path):
    src = tmp_path / "meta.parquet"
    frame(["a", "b"], ["train"] * 2, [["x"], ["x"]]).write_parquet(src)
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "neighbours", str(src), str(tmp_path / "o.parquet"),
                           "--partition", "groups"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "error:" in proc.stderr and "partition column 'groups' not found" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("values, message", [
    ({"method": "cosine"}, "neighbours.method must be one of jaccard, semantic, got 'cosine'"),
    ({"partition": "my groups"}, "neighbours.partition must be none or a column name"),
    ({"partition": "terms"}, "not the core column 'terms'"),
    ({"method": "semantic", "partition": "groups"}, "applies to method jaccard only"),
    ({"attributes": 0}, "neighbours.attributes must be >= 1"),
    ({"method": "semantic", "word2vec": "/nonexistent/GoogleNews.bin"}, "must be empty .* or an existing word2vec file"),
])
def test_params_are_validated(values, message):
    with pytest.raises(MangoError, match=message):
        NeighboursParams(**values)


def test_params_and_dvc_yaml_wire_every_option():
    from pipeline.config import load_params

    params = load_params(ROOT / "params.yaml").neighbours
    assert (params.method, params.partition, params.attributes, params.word2vec) == ("jaccard", "none", 256, "")
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["neighbours"]
    cmd = stage["cmd"]
    for option in ("--k ${neighbours.k_max}", "--method ${neighbours.method}", "--partition ${neighbours.partition}",
                   "--attributes ${neighbours.attributes}", "--word2vec '${neighbours.word2vec}'",
                   "--raw data/prepared/metadata_raw.parquet"):
        assert option in cmd
    assert "data/prepared/metadata_raw.parquet" in stage["deps"]
    assert stage["params"] == ["neighbours", "device"]  # `dvc exp run -S m=7` leaves the search alone
    assert "--device ${device}" in cmd  # semantic search's FAISS index follows the run's device
