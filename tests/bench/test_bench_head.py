"""`mango bench head` at tiny shapes on the CPU: the table per m, the product count by hand, and the
timed step really trains the head."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from pipeline.bench.head import HeadShape, flops, head_step
from stages.cli import app


def test_bench_head_prints_one_row_per_m():
    result = CliRunner().invoke(app, ["bench", "head", "--m", "1", "--m", "3", "--dim", "16", "--labels", "5",
                                      "--hidden", "8", "--batch", "4", "--steps", "2", "--warmup", "1", "--device", "cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "B = 4, D = 16, C = 5, hidden 8" in out
    assert "| 1 | 2 | 8 |" in out and "| 3 | 4 | 16 |" in out  # m, nodes, node rows = B (m + 1)
    assert "Each node added costs" in out and "from m = 1 to m = 3" in out


def test_product_flops_by_hand():
    # B (m + 1) = 64 x 16 = 1024 rows; psi 1280 -> 512 and W 1280 -> 1280, each forward and weight
    # gradient: 2 x 2 x 1024 x 1280 x (512 + 1280) multiply-adds counted as two operations
    assert flops(15, HeadShape()) == 2 * 2 * 1024 * 1280 * 1792 == 9_395_240_960


def test_the_counted_products_are_what_the_step_runs():
    """torch's own FLOP counter: the products() step does exactly flops() operations, and the real
    head step exactly those plus the adjacency's two batched products and the classifier (forward
    and both gradients of each): so it computes no gradient for the node features, which are inputs."""
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.bench.head import products

    shape, cpu = HeadShape(batch=4, dim=24, labels=5, hidden=8), torch.device("cpu")
    for m in (1, 3):
        with FlopCounterMode(display=False) as counter:
            products(m, shape, cpu)()
        assert counter.get_total_flops() == flops(m, shape) == 2 * 2 * 4 * (m + 1) * 24 * (8 + 24)
        step, _ = head_step(m, shape, cpu)
        with FlopCounterMode(display=False) as counter:
            step()
        b, n, d, c, h = shape.batch, m + 1, shape.dim, shape.labels, shape.hidden
        adjacency = 3 * 2 * b * n * n * (h + d)  # psi psi^T and S (Z W), forward and both operand gradients
        classifier = 3 * 2 * b * (2 * d) * c  # forward, weight and input gradient (the input is learnt upstream)
        assert counter.get_total_flops() == flops(m, shape) + adjacency + classifier


def test_the_timed_step_trains_the_head():
    torch.manual_seed(0)
    shape = HeadShape(batch=8, dim=12, labels=3, hidden=6)
    step, model = head_step(2, shape, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    step()
    moved = {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}
    assert moved == {"psi.weight", "psi.bias", "gcn.weight.weight", "fc.weight", "fc.bias"}  # all the head learns
