"""`mango bench gpu` at tiny shapes on the CPU: every phase runs, the JSON holds what the README
promises, the estimate follows from the measured rates, and a CUDA out-of-memory is reported."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from pipeline.bench import gpu as gpu_bench
from pipeline.bench.gpu import PHASES, BenchConfig, map_shape, run_phase
from pipeline.errors import MangoError
from stages.cli import app


@pytest.mark.parametrize("native", [True, False])
def test_bench_gpu_on_cpu_writes_every_phase(tmp_path, monkeypatch, native):
    """`precision: auto`: bf16 autocast exactly where the device has native bf16 (set both ways here,
    whatever this machine's CPU has)."""
    import pipeline.device

    monkeypatch.setattr(pipeline.device, "native_bf16", lambda device: native)
    out = tmp_path / "bench.json"
    args = ["bench", "gpu", "--device", "cpu", "--arch", "resnet10", "--input-size", "64", "--batch", "4", "--steps", "1",
            "--warmup", "1", "--m", "3", "--k-max", "4", "--labels", "5", "--hidden", "16", "--n-train", "1000", "--n-test", "500",
            "--finetune-epochs", "2", "--insatten-epochs", "3", "--mangonet-epochs", "4", "--graph-runs", "2",
            "--params", str(tmp_path / "absent.yaml"), "--out", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| phase | images/s | ms/step | peak GPU memory (GB) | input shapes | status |" in result.output
    report = json.loads(out.read_text())
    assert set(report) == {"device", "config", "phases", "estimate_seconds"}
    assert report["device"]["type"] == "cpu"
    assert report["device"]["bf16_autocast"] is native  # precision auto: on with native bf16, else fp32
    assert f"bf16 autocast {'on' if native else 'off'}, channels_last off" in result.output
    assert set(report["phases"]) == set(PHASES)
    for name, phase in report["phases"].items():
        assert set(phase) == {"status", "images_per_s", "ms_per_step", "peak_memory_gb", "shapes"}, name
        assert phase["status"] == "ok" and phase["images_per_s"] > 0 and phase["peak_memory_gb"] is None, name
        per_step = 64 if name == "nodes" else 4  # the nodes stage's block of 64 images, whatever --batch
        assert phase["images_per_s"] == pytest.approx(per_step * 1000 / phase["ms_per_step"]), name
    # shapes the store would hold: 64 px -> 2x2 maps of D = 512 (BasicBlock); 3 neighbours + the target
    assert report["phases"]["features"]["shapes"]["maps"] == [4, 512, 2, 2]
    assert report["phases"]["coattention"]["shapes"]["phi"] == [4, 4, 512, 1]  # pool 2: 2x2 -> 1x1
    assert report["phases"]["coattention"]["shapes"]["beta"] == [4, 4, 5, 1]
    assert report["phases"]["nodes"]["shapes"] == {"maps": [64, 512, 2, 2], "neighbours": [64, 4]}  # k_max each
    assert report["phases"]["mangonet"]["shapes"]["nodes"] == [4, 4, 512]  # the head on (B, m+1, D) node features
    rate = {k: v["images_per_s"] for k, v in report["phases"].items()}
    est = report["estimate_seconds"]
    # images each stage processes, from the options above: 2 finetune epochs x 1000 train images;
    # features of all 1000 + 500; 3 InsAtten epochs + its maps of all 1500; 2 graph runs x
    # (4 epochs x 1000 + 500 test predictions) on the node store, which holds the nodes of all 1500;
    # the in-batch co-attention alternative: the same images, outside the total
    images = {"finetune": 2000, "features": 1500, "insatten": 4500, "nodes": 1500, "mangonet": 9000, "coattention": 9000}
    for name, n_images in images.items():
        assert est[name] == pytest.approx(n_images / rate[name]), name
    assert est["total"] == pytest.approx(2000 / rate["finetune"] + 1500 / rate["features"]
                                         + 4500 / rate["insatten"] + 1500 / rate["nodes"] + 9000 / rate["mangonet"])
    assert "mangonet family (2 runs, head on the node store, all at m = 3: an upper bound)" in result.output
    assert "nodes (8 nodes per image, on the CPU)" in result.output
    assert "With eq. 4-9 in every batch instead" in result.output


def test_estimate_is_images_over_rate_per_stage():
    """The estimate at crafted rates, worked out by hand from the run sizes of the config."""
    cfg = BenchConfig(n_train=100, n_test=50, finetune_epochs=2, insatten_epochs=3, mangonet_epochs=4, graph_runs=5)
    rates = {"finetune": 10.0, "features": 15.0, "insatten": 45.0, "nodes": 75.0, "mangonet": 250.0, "coattention": 90.0}
    est = gpu_bench.estimate(cfg, {k: gpu_bench.PhaseResult(images_per_s=v) for k, v in rates.items()})
    # finetune 2 x 100 / 10; features (100 + 50) / 15; insatten (3 x 100 + 150) / 45; nodes 150 / 75;
    # mangonet 5 x (4 x 100 + 50) / 250; total 20 + 10 + 10 + 2 + 9; coattention 2250 / 90 beside it
    assert est == pytest.approx({"finetune": 20.0, "features": 10.0, "insatten": 10.0, "nodes": 2.0, "mangonet": 9.0,
                                 "total": 51.0, "coattention": 25.0})


def test_estimate_on_several_gpus_divides_the_torchrun_stages():
    """--gpus 4: finetune, features, insatten and the family take a quarter; the nodes stage (one
    process) does not; the same crafted rates as above."""
    cfg = BenchConfig(n_train=100, n_test=50, finetune_epochs=2, insatten_epochs=3, mangonet_epochs=4, graph_runs=5, gpus=4)
    rates = {"finetune": 10.0, "features": 15.0, "insatten": 45.0, "nodes": 75.0, "mangonet": 250.0}
    est = gpu_bench.estimate(cfg, {k: gpu_bench.PhaseResult(images_per_s=v) for k, v in rates.items()})
    assert est == pytest.approx({"finetune": 5.0, "features": 2.5, "insatten": 2.5, "nodes": 2.0, "mangonet": 2.25,
                                 "total": 14.25})
    with pytest.raises(MangoError, match="--gpus must be >= 1"):
        BenchConfig(gpus=0)


def test_nodes_phase_runs_on_the_cpu_whatever_the_device(monkeypatch):
    """The nodes stage runs on the CPU, so its phase is timed there even when the bench runs on CUDA:
    no CUDA call, no GPU memory figure."""
    for fn in ("empty_cache", "reset_peak_memory_stats", "synchronize", "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, fn, lambda *a, **k: pytest.fail(f"torch.cuda.{fn} called for a CPU phase"))
    seen = []
    build = gpu_bench.BUILDERS["nodes"]
    monkeypatch.setitem(gpu_bench.BUILDERS, "nodes", lambda cfg, device: seen.append(device) or build(cfg, device))
    cfg = BenchConfig(arch="resnet10", input_size=64, batch=2, k_max=3, labels=4, steps=1, warmup=0)
    result = run_phase("nodes", cfg, torch.device("cuda"))
    assert seen == [torch.device("cpu")] and result.status == "ok" and result.peak_memory_gb is None
    assert result.shapes == {"maps": [64, 512, 2, 2], "neighbours": [64, 3]}  # the stage's block, not --batch 2


def test_nodes_phase_times_the_stages_own_function(monkeypatch):
    """What is timed is compute_nodes with the params' co-attention variant and pool, writing a store."""
    import functools

    import pipeline.features.nodes as nodes

    calls, real = [], nodes.compute_nodes

    @functools.wraps(real)  # the same signature, so the same default block
    def recorded(maps, beta, y, neighbours, cfg, pool, out, **kw):
        calls.append((maps.shape, neighbours.shape, cfg, pool))
        meta = real(maps, beta, y, neighbours, cfg, pool, out, **kw)
        assert (out / "neighbour_z.npy").exists() and meta["k"] == neighbours.shape[1]
        return meta

    monkeypatch.setattr(nodes, "compute_nodes", recorded)
    cfg = BenchConfig(arch="resnet10", input_size=64, batch=2, k_max=3, labels=4, steps=2, warmup=1)
    assert run_phase("nodes", cfg, torch.device("cpu")).status == "ok"
    assert calls == [((64, 512, 2, 2), (64, 3), cfg.coattention, cfg.coatten_pool)] * 3  # warm-up + 2 timed


def test_coattention_phase_learns_the_params_temperature(monkeypatch):
    """The in-batch phase is the learnt-temperature path: the params' variant (maps, temperature)
    with learn_temperature on, so its timed step runs backward through eq. 4-9 into the temperature."""
    from pipeline.models import mangonet

    built = []

    class Spy(mangonet.MangoNet):
        def __init__(self, config):
            super().__init__(config)
            built.append(self)

    monkeypatch.setattr(mangonet, "MangoNet", Spy)
    cfg = BenchConfig(arch="resnet10", input_size=128, batch=2, m=2, labels=4, insatten_hidden=8, mangonet_hidden=8,  # P = 2 x 2
                      coattention=gpu_bench.CoAttentionConfig(maps="scores", temperature=0.25))
    step = gpu_bench.BUILDERS["coattention"](cfg, torch.device("cpu")).step
    (model,) = built
    assert model.coatten.maps == "scores" and model.coatten.learn_temperature
    before = model.log_temperature.detach().clone()
    assert before.exp().item() == pytest.approx(0.25)
    step()
    assert isinstance(model.log_temperature, torch.nn.Parameter) and model.log_temperature.grad is not None
    assert model.log_temperature.grad.abs().item() > 0 and not torch.equal(model.log_temperature.detach(), before)


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
    est = gpu_bench.estimate(cfg, {"finetune": result, "features": ok, "insatten": ok, "nodes": ok, "mangonet": ok})
    assert est["finetune"] is None and est["total"] is None and est["features"] == pytest.approx(2696.48)  # (161,789 + 107,859) / 100

    def broken(cfg, device):
        raise RuntimeError("shape mismatch")

    monkeypatch.setitem(gpu_bench.BUILDERS, "finetune", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_phase("finetune", cfg, torch.device("cuda"))


def test_bad_option_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["bench", "gpu", "--device", "cpu", "--arch", "resnet11", "--params", str(tmp_path / "x.yaml")])
    assert result.exit_code != 0 and "unknown model 'resnet11'. Valid names" in str(result.exception)
