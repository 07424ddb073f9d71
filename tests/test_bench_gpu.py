"""`mango bench gpu` at tiny shapes on the CPU: every phase runs, the JSON holds what the README
promises, the estimate follows from the measured rates, and a CUDA out-of-memory is reported."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from pipeline import gpu_bench
from pipeline.gpu_bench import PHASES, BenchConfig, map_shape, run_phase
from stages.cli import app


def test_bench_gpu_on_cpu_writes_every_phase(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "gpu", "--device", "cpu", "--arch", "resnet10", "--input-size", "64", "--batch", "4", "--steps", "1",
            "--warmup", "1", "--m", "3", "--labels", "5", "--hidden", "16", "--n-train", "1000", "--n-test", "500",
            "--finetune-epochs", "2", "--insatten-epochs", "3", "--mangonet-epochs", "4", "--graph-runs", "2",
            "--params", str(tmp_path / "absent.yaml"), "--out", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| phase | images/s | ms/step | peak GPU memory (GB) | input shapes | status |" in result.output
    report = json.loads(out.read_text())
    assert set(report) == {"device", "config", "phases", "estimate_seconds"}
    from pipeline.device import native_bf16

    assert report["device"]["type"] == "cpu"
    assert report["device"]["bf16_autocast"] is native_bf16(torch.device("cpu"))  # precision auto
    assert set(report["phases"]) == set(PHASES)
    for name, phase in report["phases"].items():
        assert set(phase) == {"status", "images_per_s", "ms_per_step", "peak_memory_gb", "shapes"}, name
        assert phase["status"] == "ok" and phase["images_per_s"] > 0 and phase["peak_memory_gb"] is None, name
        assert phase["images_per_s"] == pytest.approx(4 * 1000 / phase["ms_per_step"]), name
    # shapes the store would hold: 64 px -> 2x2 maps of D = 512 (BasicBlock); 3 neighbours + the target
    assert report["phases"]["features"]["shapes"]["maps"] == [4, 512, 2, 2]
    assert report["phases"]["mangonet"]["shapes"]["phi"] == [4, 4, 512, 1]  # pool 2: 2x2 -> 1x1
    assert report["phases"]["mangonet"]["shapes"]["beta"] == [4, 4, 5, 1]
    rate = {k: v["images_per_s"] for k, v in report["phases"].items()}
    est = report["estimate_seconds"]
    assert est["finetune"] == pytest.approx(2 * 1000 / rate["finetune"])
    assert est["features"] == pytest.approx(1500 / rate["features"])
    assert est["insatten"] == pytest.approx((3 * 1000 + 1500) / rate["insatten"])
    assert est["mangonet"] == pytest.approx(2 * (4 * 1000 + 500) / rate["mangonet"])
    assert est["total"] == pytest.approx(sum(est[k] for k in PHASES))


def test_map_shape_follows_the_models_own_strides():
    """The estimate's map sizes come from probing the model: ResNet-101 at 448 px gives the paper's
    (2048, 14x14); ResNet-10 at 100 px rounds each of its five halvings up (100 -> 4)."""
    assert map_shape(BenchConfig(input_size=448)) == (2048, 14)
    assert map_shape(BenchConfig(arch="resnet10", input_size=100)) == (512, 4)
    assert map_shape(BenchConfig(arch="mobilenet_v2", input_size=224)) == (1280, 7)


def test_cuda_out_of_memory_is_reported_per_phase(monkeypatch):
    """A phase that runs out of GPU memory is reported and leaves the estimate open; other errors raise."""
    for fn in ("empty_cache", "reset_peak_memory_stats", "synchronize"):
        monkeypatch.setattr(torch.cuda, fn, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 141e9)

    def oom(cfg, device):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setitem(gpu_bench.BUILDERS, "finetune", oom)
    cfg = BenchConfig()
    result = run_phase("finetune", cfg, torch.device("cuda"))
    assert result.status == "out of memory" and result.images_per_s is None and result.peak_memory_gb == 141.0
    ok = gpu_bench.PhaseResult(images_per_s=100.0)
    est = gpu_bench.estimate(cfg, {"finetune": result, "features": ok, "insatten": ok, "mangonet": ok})
    assert est["finetune"] is None and est["total"] is None and est["features"] == pytest.approx((cfg.n_train + cfg.n_test) / 100)

    def broken(cfg, device):
        raise RuntimeError("shape mismatch")

    monkeypatch.setitem(gpu_bench.BUILDERS, "finetune", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_phase("finetune", cfg, torch.device("cuda"))


def test_bad_option_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["bench", "gpu", "--device", "cpu", "--arch", "resnet11", "--params", str(tmp_path / "x.yaml")])
    assert result.exit_code != 0 and "unknown model 'resnet11'. Valid names" in str(result.exception)
