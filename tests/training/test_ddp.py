"""DDP under torchrun: the training stages run in 2 CPU processes (gloo) and match one process.

The processes are forked from the test with the environment torchrun gives them (WORLD_SIZE,
RANK, LOCAL_RANK, MASTER_ADDR/PORT: env:// rendezvous) and run the `mango` commands themselves, so
the code under test is the one `torchrun --nproc-per-node 2 mango ...` runs; forking saves the
seconds of a fresh torch import per process.

What equivalence holds, and why: with a global batch of B rows, each of the N processes trains on
rows r, r + N, ... of every batch (`index_batches(shard=True)`), weighs its summed BCE by
N / (rows of the global batch) and DDP averages the gradients, so every SGD step applies the
gradient of the mean BCE over the same B rows as one process does, in the same order, from the
same initial weights (DDP broadcasts rank 0's). The models have no batch-dependent layers, so
the runs differ only by float32 summation order (per-rank partial sums, then gloo's all-reduce).
Batch sizes are chosen so that shares are unequal (7 rows -> 4 + 3), which a plain mean of
per-rank means would get wrong at first order. Measured: weights and scores agree to ~1e-6;
the test allows 1e-4 (absolute, on scores in [0, 1] and on weights).

`mango finetune` under torchrun uses a DistributedSampler (its own shuffle) and per-rank batch
norm statistics, so it is not step-for-step equal to one process; the test checks that it runs,
keeps the global batch, and that rank 0 alone writes the checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from stages.cli import app

N, D, H, W, C = 64, 16, 2, 2, 3
TOL = 1e-4


def write_world(root: Path) -> dict[str, Path]:
    """Prepared images (tiny JPEGs), labels, metadata, neighbours, a feature store with a planted
    signal (channel k lights up where label k is present) and a small params.yaml."""
    from pipeline.features.store import FeatureStore

    rng = np.random.default_rng(0)
    ids = [f"i{i}" for i in range(N)]
    split = np.where(np.arange(N) % 2 == 0, "train", "test")
    targets = (rng.random((N, C)) < 0.4).astype(np.uint8)
    prepared, interim, store = root / "prepared", root / "interim", root / "features"
    for d in (prepared / "img", interim, store):
        d.mkdir(parents=True)
    paths = []
    for i in range(N):
        path = prepared / "img" / f"{ids[i]}.jpg"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    pl.DataFrame({"image_id": ids, "path": paths, "split": split}).write_parquet(prepared / "images.parquet")
    pl.DataFrame({"image_id": ids, **{name: targets[:, k] for k, name in enumerate("abc")}},
                 schema={"image_id": pl.String, **{name: pl.UInt8 for name in "abc"}}).write_parquet(prepared / "labels.parquet")
    pl.DataFrame({"image_id": ids, "split": split, "terms": [[f"t{i % 5}"] for i in range(N)]},
                 schema={"image_id": pl.String, "split": pl.String, "terms": pl.List(pl.String)}).write_parquet(
        interim / "metadata.parquet")

    maps = rng.normal(0, 0.3, (N, D, H, W)).astype(np.float32)
    for i in range(N):
        for k in np.flatnonzero(targets[i]):
            maps[i, k, rng.integers(H), rng.integers(W)] += 3.0
    FeatureStore.write(store, maps, ids, split.tolist(), list("abc"))

    src, dst, rank = [], [], []
    for i in range(N):  # two neighbours of the same split
        for r, j in enumerate(((i + 2) % N, (i + 4) % N), start=1):
            src.append(ids[i]), dst.append(ids[j]), rank.append(r)
    pl.DataFrame({"image_id": src, "rank": rank, "neighbour_id": dst, "score": 0.5},
                 schema={"image_id": pl.String, "rank": pl.Int32, "neighbour_id": pl.String, "score": pl.Float64}
                 ).write_parquet(interim / "neighbours.parquet")

    params = {"seed": 0, "m": 2, "device": "cpu",
              "backbone": {"arch": "resnet10", "weights": "none", "input_size": 32},
              "finetune": {"epochs": 1, "batch_size": 8, "lr": 0.01, "num_workers": 0},
              # batch 7 over 32 training rows: shares 4 + 3, and a last batch of 4 (2 + 2)
              "insatten": {"epochs": 3, "batch_size": 7, "lr": 0.1, "hidden": 16},
              # batch 10: a last batch of 2 (1 + 1)
              "mangonet": {"epochs": 3, "batch_size": 10, "lr": 0.1, "hidden": 8}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return {"prepared": prepared, "metadata": interim / "metadata.parquet", "features": store,
            "neighbours": interim / "neighbours.parquet", "params": root / "params.yaml"}


def insatten_args(w: dict, out: Path) -> list[str]:
    return ["insatten", "--features", str(w["features"]), "--prepared", str(w["prepared"]), "--metadata", str(w["metadata"]),
            "--checkpoint", str(out / "insatten.pt"), "--out", str(out / "attention"),
            "--predictions", str(out / "insatten.parquet"), "--live", str(out / "live"), "--params", str(w["params"])]


def mangonet_args(w: dict, attention: Path, out: Path) -> list[str]:
    return ["train", "mangonet", "--features", str(w["features"]), "--attention", str(attention),
            "--neighbours", str(w["neighbours"]), "--prepared", str(w["prepared"]), "--metadata", str(w["metadata"]),
            "--checkpoint", str(out / "mangonet.pt"), "--predictions", str(out / "mangonet.parquet"),
            "--params", str(w["params"])]


def one_process(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _rank_main(rank: int, world: int, jobs: list[tuple[int, list[str]]], report: Path) -> None:
    """One process of a torchrun-like launch: for each (port, ARGS) job, the env:// variables
    torchrun sets, then `mango ARGS`; records what each job did into `report`/rank<r>.json."""
    torch.set_num_threads(1)
    import pipeline.data.tables
    import pipeline.distributed as dd
    import pipeline.training.loop

    seen: dict = {}
    wrap, shard, save, write = dd.wrap, dd.shard, pipeline.training.loop.save_checkpoint, pipeline.data.tables.write_predictions

    def spy_wrap(model, device):
        out = wrap(model, device)
        seen["wrapped"].append([type(out).__name__, dd.world_size(), dd.rank()])
        return out

    def spy_shard(batch):
        out = shard(batch)
        seen["rows"] += len(out)
        return out

    def counted(fn):
        def call(*a, **k):
            seen["writes"] += 1
            return fn(*a, **k)
        return call

    dd.wrap, dd.shard = spy_wrap, spy_shard
    pipeline.training.loop.save_checkpoint, pipeline.data.tables.write_predictions = counted(save), counted(write)
    reports = []
    for port, args in jobs:
        os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        seen.update(wrapped=[], rows=0, writes=0)
        app(args, standalone_mode=False)
        reports.append(dict(seen))
    (report / f"rank{rank}.json").write_text(json.dumps(reports))


def two_processes(jobs: list[list[str]], report: Path) -> list[list[dict]]:
    """Each `mango ARGS` of `jobs` in turn, in 2 CPU processes joined by gloo as
    `torchrun --nproc-per-node 2 mango ARGS` starts them; returns per rank, per job, its report."""
    import multiprocessing
    import socket

    ports = []
    for _ in jobs:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    report.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, like torchrun's (fork is unsafe after OpenMP use)
    procs = [ctx.Process(target=_rank_main, args=(r, 2, list(zip(ports, jobs)), report)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=150)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0], "a rank failed (its traceback is in the captured stderr)"
    return [json.loads((report / f"rank{r}.json").read_text()) for r in range(2)]


def max_weight_gap(a: Path, b: Path) -> float:
    sa, sb = (torch.load(p, weights_only=True)["model"] for p in (a, b))
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def max_score_gap(a: Path, b: Path) -> float:
    fa, fb = pl.read_parquet(a), pl.read_parquet(b)
    assert fa["image_id"].to_list() == fb["image_id"].to_list()
    return float(np.abs(fa.drop("image_id").to_numpy() - fb.drop("image_id").to_numpy()).max())


def leftovers(folder: Path) -> list[str]:
    """Temporary files of an atomic write that was not renamed (a second writer would leave some)."""
    return [p.name for p in folder.rglob(".*tmp-*")]


needs_ddp = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")


@needs_ddp
def test_ddp_training_stages_match_one_process(tmp_path):
    w = write_world(tmp_path / "world")
    ref, ddp = tmp_path / "ref", tmp_path / "ddp"
    one_process(insatten_args(w, ref))
    one_process(mangonet_args(w, ref / "attention", ref))

    finetune = ["finetune", "--prepared", str(w["prepared"]), "--metadata", str(w["metadata"]),
                "--out", str(ddp / "backbone.pt"), "--params", str(w["params"])]
    features = ["features", "--prepared", str(w["prepared"]), "--metadata", str(w["metadata"]),
                "--checkpoint", str(ddp / "backbone.pt"), "--params", str(w["params"])]
    insatten, mangonet, tune, extract = zip(*two_processes(
        [insatten_args(w, ddp), mangonet_args(w, ref / "attention", ddp), finetune,
         [*features, "--out", str(ddp / "features"), "--predictions", str(ddp / "multicnn.parquet")]], tmp_path / "report"))

    # DDP really ran: each rank wrapped the model, trained on its share (3 epochs x 32 rows in all:
    # batches 7,7,7,7,4 -> rank 0 takes 4,4,4,4,2 and rank 1 3,3,3,3,2), and only rank 0 wrote
    assert [r["wrapped"] for r in insatten] == [[["DistributedDataParallel", 2, 0]], [["DistributedDataParallel", 2, 1]]]
    assert [r["rows"] for r in insatten] == [3 * 18, 3 * 14]
    assert [r["writes"] for r in insatten] == [2, 0]  # checkpoint + predictions, by rank 0 only
    gap_w, gap_s = max_weight_gap(ref / "insatten.pt", ddp / "insatten.pt"), max_score_gap(ref / "insatten.parquet", ddp / "insatten.parquet")
    assert gap_w < TOL and gap_s < TOL, (gap_w, gap_s)
    ref_hist = json.loads((ref / "live" / "metrics.json").read_text())
    ddp_hist = json.loads((ddp / "live" / "metrics.json").read_text())  # dvclive, written by rank 0
    assert ddp_hist["train_loss"] == pytest.approx(ref_hist["train_loss"], abs=TOL)  # logged loss = global batch mean
    np.testing.assert_allclose(np.load(ddp / "attention" / "beta.npy").astype(np.float32),
                               np.load(ref / "attention" / "beta.npy").astype(np.float32), atol=1e-3)  # fp16 store

    assert [r["rows"] for r in mangonet] == [3 * 16, 3 * 16]  # batches 10,10,10,2 -> 5,5,5,1 each
    assert [r["writes"] for r in mangonet] == [2, 0]
    gap_w, gap_s = max_weight_gap(ref / "mangonet.pt", ddp / "mangonet.pt"), max_score_gap(ref / "mangonet.parquet", ddp / "mangonet.parquet")
    assert gap_w < TOL and gap_s < TOL, (gap_w, gap_s)
    history = torch.load(ddp / "mangonet.pt", weights_only=True)["history"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]

    # finetune: a DistributedSampler, per-rank batch 8 / 2 = 4 images; rank 0 writes the checkpoint
    assert [r["wrapped"][0][0] for r in tune] == ["DistributedDataParallel"] * 2
    assert [r["writes"] for r in tune] == [1, 0]
    ckpt = torch.load(ddp / "backbone.pt", weights_only=True)
    assert ckpt["labels"] == list("abc") and len(ckpt["history"]) == 1 and np.isfinite(ckpt["history"][0]["train_loss"])

    # features: each rank extracted its half of the images into the one store; identical to one process
    one_process([*features, "--out", str(ref / "features"), "--predictions", str(ref / "multicnn.parquet")])
    assert [r["writes"] for r in extract] == [1, 0]  # the Multi-CNN predictions, by rank 0
    for name in ("maps.npy", "pooled.npy", "scores.npy"):
        a, b = np.load(ref / "features" / name), np.load(ddp / "features" / name)
        assert a.shape == b.shape and a.shape[0] == N
        np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), atol=1e-3, err_msg=name)
    assert pl.read_parquet(ddp / "features" / "index.parquet").equals(pl.read_parquet(ref / "features" / "index.parquet"))
    assert json.loads((ddp / "features" / "meta.json").read_text())["processes"] == 2
    assert max_score_gap(ref / "multicnn.parquet", ddp / "multicnn.parquet") < TOL
    assert leftovers(ddp) == []


@pytest.mark.parametrize("n,batch,world", [(32, 7, 2), (31, 10, 3), (10, 4, 3), (5, 8, 2)])
def test_shards_cover_each_global_batch_once(monkeypatch, n, batch, world):
    """Per global batch the ranks' shards are disjoint and cover it; a last batch smaller than the
    world is skipped by every rank; n_batches(shard=True) counts what index_batches yields."""
    import pipeline.distributed as dd
    from pipeline.features.batching import index_batches, n_batches

    rows = np.arange(100, 100 + n)
    per_rank = []
    for r in range(world):
        monkeypatch.setattr(dd, "active", lambda: True)
        monkeypatch.setattr(dd, "world_size", lambda: world)
        monkeypatch.setattr(dd, "rank", lambda r=r: r)
        per_rank.append(list(index_batches(rows, batch, shuffle=True, seed=3, epoch=1, shard=True)))
        assert len(per_rank[-1]) == n_batches(n, batch, shard=True)
    monkeypatch.undo()
    full = list(index_batches(rows, batch, shuffle=True, seed=3, epoch=1))
    kept = [b for b in full if len(b) >= world]
    for step, global_batch in enumerate(kept):
        together = np.concatenate([per_rank[r][step] for r in range(world)])
        assert sorted(together) == sorted(global_batch) and all(len(per_rank[r][step]) > 0 for r in range(world))
    assert n_batches(n, batch) == len(full) and list(index_batches(rows, batch, True, 3, 1, shard=True))[0].tolist() == full[0].tolist()
