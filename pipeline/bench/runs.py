"""Timed contenders for `mango bench neighbours` and `mango bench lemmatise`.

Each contender runs in a fresh process (multiprocessing "spawn"), so that its peak resident memory
(ru_maxrss) is its own and its imports, JIT cache loads and allocations do not leak into another
contender's figures. A child regenerates its input from the seed (not timed), records its resident
peak before the timed work (`rss_input_mb`) and after it (`rss_peak_mb`), and sends back a dict.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import time
from dataclasses import dataclass

import numpy as np

from pipeline.errors import MangoError


@dataclass(frozen=True)
class TagData:
    """The synthetic tag matrix of a neighbours benchmark, regenerated identically in each child."""

    n: int
    vocab: int = 3000
    tags_per_image: float = 10.0
    test_fraction: float = 0.5
    seed: int = 0

    def build(self, rows: int | None = None):
        """(X (rows, vocab) binary CSR, split (rows,) 'train'/'test'): the first `rows` images."""
        from pipeline.bench.data import splits, zipf_tag_matrix

        X = zipf_tag_matrix(self.n, self.vocab, self.tags_per_image, self.seed)
        split = splits(self.n, self.test_fraction, self.seed)
        rows = self.n if rows is None else rows
        return X[:rows], split[:rows]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _child(name: str, kwargs: dict, conn) -> None:
    try:
        conn.send(("ok", globals()[name](**kwargs)))
    except BaseException as exc:  # report, never hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_isolated(name: str, **kwargs) -> dict:
    """Run the contender function `name` of this module in a fresh process; return its dict."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(name, kwargs, child))
    proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        proc.join()
        raise MangoError(f"benchmark: the '{name}' process died (exit code {proc.exitcode}), e.g. out of memory")
    proc.join()
    if status != "ok":
        raise MangoError(f"benchmark: '{name}' failed: {payload}")
    return payload


def _per_split(X, split, k: int, search, sample: np.ndarray | None) -> dict:
    """Time `search(X_split, k)` over each split as search_neighbours does; keep sampled rows."""
    out = {"seconds": 0.0, "cpu_seconds": 0.0, "sample_idx": [], "sample_score": []}
    for name in np.unique(split):
        rows = np.flatnonzero(split == name)
        Xs = X[rows]
        t, c = time.perf_counter(), _cpu_s()
        idx, score = search(Xs, k)
        out["seconds"] += time.perf_counter() - t
        out["cpu_seconds"] += _cpu_s() - c
        if sample is not None:
            local = np.searchsorted(rows, sample[np.isin(sample, rows)])
            out["sample_idx"].append(np.where(idx[local] >= 0, rows[np.maximum(idx[local], 0)], -1))
            out["sample_score"].append(score[local])
    if sample is not None:  # back in the order of `sample`, with global row numbers
        order = np.argsort(np.concatenate([sample[np.isin(sample, np.flatnonzero(split == s))] for s in np.unique(split)]))
        out["sample_idx"] = np.concatenate(out["sample_idx"])[order]
        out["sample_score"] = np.concatenate(out["sample_score"])[order]
    return out


def index_contender(data: dict, k: int, sample: np.ndarray) -> dict:
    """The default jaccard_topk (inverted index, numba) on both splits; the first call (JIT compile
    or cache load) is timed apart on a tiny input."""
    import numba
    import scipy.sparse as sp

    X, split = TagData(**data).build()
    rss_input = _rss_mb()
    t = time.perf_counter()
    from pipeline.neighbours.jaccard import jaccard_topk

    jaccard_topk(sp.csr_matrix(np.eye(3, dtype=np.int32)), 2, method="index")
    first_call = time.perf_counter() - t
    out = _per_split(X, split, k, jaccard_topk, sample)
    return {**out, "n": X.shape[0], "first_call_s": first_call, "threads": numba.get_num_threads(),
            "rss_input_mb": rss_input, "rss_peak_mb": _rss_mb()}


def _terms_frame(X, split):
    """The `neighbours` stage's input frame for a tag matrix: image_id, split, terms (tag ids as strings)."""
    import polars as pl
    import pyarrow as pa

    values = pa.array(X.indices.astype(str))
    if isinstance(values, pa.ChunkedArray):  # large inputs come back in chunks
        values = values.combine_chunks()
    terms = pa.ListArray.from_arrays(pa.array(X.indptr.astype(np.int32)), values)
    return pl.DataFrame({"image_id": np.char.add("im", np.arange(X.shape[0]).astype(str)), "split": split,
                         "terms": pl.from_arrow(terms)})


def pipeline_contender(data: dict, k: int) -> dict:
    """search_neighbours end to end, as the `neighbours` stage runs it: a frame of term lists in,
    a frame of (image_id, rank, neighbour_id, score) out."""
    import scipy.sparse as sp

    X, split = TagData(**data).build()
    df = _terms_frame(X, split)
    del X
    from pipeline.neighbours.jaccard import jaccard_topk, search_neighbours

    jaccard_topk(sp.csr_matrix(np.eye(3, dtype=np.int32)), 2, method="index")  # JIT load, as in index_contender
    rss_input = _rss_mb()
    t, c = time.perf_counter(), _cpu_s()
    out = search_neighbours(df, k)
    return {"seconds": time.perf_counter() - t, "cpu_seconds": _cpu_s() - c, "n": df.height, "rows_out": out.height,
            "rss_input_mb": rss_input, "rss_peak_mb": _rss_mb()}


def mango_executable() -> list[str]:
    """The command line that starts `mango` in this environment: the console script next to this
    interpreter, else the one on PATH, else the CLI module run by this interpreter."""
    import shutil
    import sys
    from pathlib import Path

    here = Path(sys.executable).parent / "mango"
    if here.is_file():
        return [str(here)]
    found = shutil.which("mango")
    return [found] if found else [sys.executable, "-m", "stages.cli"]


def _sample_rows(path, k: int, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(len(sample), k) neighbour rows and scores of the images `sample` in a neighbours Parquet file
    written for the collection of `_terms_frame` (ids "im<row>"), padded with -1 / nan like
    brute_force_topk."""
    import polars as pl

    ids = pl.Series(np.char.add("im", sample.astype(str)))
    rows = (pl.scan_parquet(path).filter(pl.col("image_id").is_in(ids.implode())).collect()
            .with_columns(pl.col("image_id").str.slice(2).cast(pl.Int64), pl.col("neighbour_id").str.slice(2).cast(pl.Int64)))
    at = np.searchsorted(sample, rows["image_id"].to_numpy())
    rank = rows["rank"].to_numpy().astype(np.int64) - 1
    idx, score = np.full((sample.size, k), -1, dtype=np.int64), np.full((sample.size, k), np.nan)
    idx[at, rank], score[at, rank] = rows["neighbour_id"].to_numpy(), rows["score"].to_numpy()
    return idx, score


def _signal_text(number: int) -> str:
    """How a child killed by signal `number` is described: its name, and for SIGKILL, which the
    kernel's out-of-memory killer sends, that hint."""
    try:
        name = signal.Signals(number).name
    except ValueError:  # a real-time signal has no name in the enum
        name = signal.strsignal(number) or "unknown"
    return f"{name}; out of memory?" if number == signal.SIGKILL else name


def _wait(pid: int, timeout_s: float, poll_s: float = 0.005) -> tuple[int, resource.struct_rusage, bool]:
    """Wait for child `pid` in this thread (nothing else reaps it), killing its process group past
    `timeout_s`: (wait status, its own rusage, whether the timeout killed it). Polled every `poll_s`
    seconds, which bounds the timing error."""
    deadline, timed_out = time.perf_counter() + timeout_s, False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)  # this child's own rusage, not all children's
        if done:
            return status, usage, timed_out
        if not timed_out and time.perf_counter() >= deadline:
            os.killpg(pid, signal.SIGKILL)  # not reaped yet, so the pid (and its group) is still ours
            timed_out = True
        time.sleep(poll_s)


def command_contender(data: dict, k: int, sample: np.ndarray | None = None, timeout_s: float = 3600.0) -> dict:
    """The whole `mango neighbours IN OUT --k k` command, timed from launch to exit (interpreter
    start, imports, JIT cache load, Parquet read, search, Parquet write): IN is the collection as a
    Parquet file of term lists, written first (not timed). The child's own CPU time and peak RSS
    come from wait4; past `timeout_s` it is killed with its whole process group, as it is when this
    process is interrupted. The rows of the images `sample` (sorted) are read back from OUT, for the
    exactness check."""
    import subprocess
    import tempfile
    from pathlib import Path

    import pyarrow.parquet as pq

    X, split = TagData(**data).build()
    with tempfile.TemporaryDirectory(prefix="mango-bench-") as tmp:
        src, dst, log_path = Path(tmp) / "metadata.parquet", Path(tmp) / "neighbours.parquet", Path(tmp) / "log.txt"
        _terms_frame(X, split).write_parquet(src)
        del X
        exe = mango_executable()
        cmd = [*exe, "neighbours", str(src), str(dst), "--k", str(k)]
        with open(log_path, "w+b") as log_file:
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                status, usage, timed_out = _wait(proc.pid, timeout_s)
            except BaseException:  # interrupted: leave no child writing into the removed directory
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL  # reaped here, so Popen does not wait for it again
                raise
            seconds = time.perf_counter() - t
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            log_file.seek(0)
            tail = log_file.read().decode("utf-8", errors="replace").strip().splitlines()[-5:]
        shown = " ".join(cmd)
        said = " | ".join(tail) if tail else "no output"
        if code != 0:
            if timed_out:
                why = f"killed after the {timeout_s:.0f} s timeout"
            elif code < 0:
                why = f"killed by signal {-code} ({_signal_text(-code)})"
            else:
                why = f"exited with {code}"
            raise MangoError(f"`{shown}` {why}: {said}")
        if not dst.exists():
            raise MangoError(f"`{shown}` exited with 0 but wrote no {dst.name}: {said}")
        out = {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "n": int(split.size),
               "rows_out": pq.ParquetFile(dst).metadata.num_rows, "in_mb": src.stat().st_size / 2**20,
               "out_mb": dst.stat().st_size / 2**20, "rss_input_mb": None, "rss_peak_mb": usage.ru_maxrss / 1024.0,
               "command": exe}
        if sample is not None:
            out["sample_idx"], out["sample_score"] = _sample_rows(dst, k, np.asarray(sample))
        return out


def blocked_contender(data: dict, k: int, rows: int, block_size: int = 2048) -> dict:
    """The plain blocked sparse product (jaccard_topk_blocked) on the first `rows` images."""
    from pipeline.neighbours.jaccard import jaccard_topk_blocked

    X, split = TagData(**data).build(rows)
    rss_input = _rss_mb()
    out = _per_split(X, split, k, lambda Xs, k: jaccard_topk_blocked(Xs, k, block_size), None)
    return {**out, "n": X.shape[0], "rss_input_mb": rss_input, "rss_peak_mb": _rss_mb()}


def sklearn_contender(data: dict, k: int, rows: int) -> dict:
    """scikit-learn NearestNeighbors(metric='jaccard', algorithm='brute') on dense booleans of the
    first `rows` images of the train split (fit + kneighbors of every row)."""
    from sklearn.neighbors import NearestNeighbors

    X, split = TagData(**data).build()
    B = X[np.flatnonzero(split == "train")[:rows]].toarray().astype(bool)  # (rows, vocab)
    rss_input = _rss_mb()
    t, c = time.perf_counter(), _cpu_s()
    NearestNeighbors(n_neighbors=min(k + 1, B.shape[0]), metric="jaccard", algorithm="brute").fit(B).kneighbors(B)
    return {"seconds": time.perf_counter() - t, "cpu_seconds": _cpu_s() - c, "n": B.shape[0],
            "rss_input_mb": rss_input, "rss_peak_mb": _rss_mb()}


def lemmatise_contender(n: int, tags_per_image: float, seed: int, tail: int, vocab_size: int,
                        old_tokeniser_items: int) -> dict:
    """pipeline.text.lemmatise.lemmatise on generated raw tags, WordNet loading timed apart; and, for
    comparison, the former per-row NLTK tokeniser on the first `old_tokeniser_items` raw items."""
    import polars as pl

    from pipeline.bench.data import raw_metadata_frames
    from pipeline.text.lemmatise import TOKEN_PATTERN, lemmatise, wordnet

    images, labels, raw = raw_metadata_frames(n, tags_per_image, seed, tail)
    rss_input = _rss_mb()
    t = time.perf_counter()
    wordnet()
    wordnet_s = time.perf_counter() - t
    t, c = time.perf_counter(), _cpu_s()
    result = lemmatise(images, labels, raw, vocab_size)
    seconds, cpu = time.perf_counter() - t, _cpu_s() - c
    out = {"seconds": seconds, "cpu_seconds": cpu, "wordnet_load_s": wordnet_s, "images": n, "raw_items": raw.height,
           "rss_input_mb": rss_input, "rss_peak_mb": _rss_mb(), "stats": result.stats}
    head = raw.head(old_tokeniser_items)["text"].str.to_lowercase()
    t = time.perf_counter()
    head.str.extract_all(TOKEN_PATTERN)
    out["tokenise_polars_s"] = time.perf_counter() - t
    if old_tokeniser_items:
        from nltk.tokenize import RegexpTokenizer

        t = time.perf_counter()
        head.map_elements(RegexpTokenizer(TOKEN_PATTERN).tokenize, return_dtype=pl.List(pl.String))
        out["tokenise_nltk_s"] = time.perf_counter() - t
    out["tokenise_items"] = head.len()
    return out
