"""`pipeline.training.loop.SGD` against torch.optim.SGD + LambdaLR: the same parameters, bit for
bit, after every step; and a training run that never imports torch._dynamo (the reason it exists)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pipeline.training.loop import SGD, cosine


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    model[0].bias.requires_grad_(False)  # a frozen parameter, as in fine-tuning
    return model


@pytest.mark.parametrize("schedule, momentum, weight_decay", [("cosine", 0.9, 1e-4), (None, 0.0, 0.0), (None, 0.9, 0.0)])
def test_same_parameters_as_torch_optim(schedule, momentum, weight_decay):
    ours, theirs = _model(0), _model(0)
    total = 12
    params = [p for p in ours.parameters() if p.requires_grad]
    opt = SGD(params, lr=0.3, momentum=momentum, weight_decay=weight_decay,
              factor=cosine(total) if schedule else None)
    ref = torch.optim.SGD([p for p in theirs.parameters() if p.requires_grad], lr=0.3, momentum=momentum,
                          weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(ref, cosine(total)) if schedule else None
    gen = torch.Generator().manual_seed(1)
    for step in range(total):
        x, y = torch.randn(4, 7, generator=gen), torch.rand(4, 3, generator=gen)
        for model, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
            o.step()
        if sched is not None:
            sched.step()
        assert opt.lr == ref.param_groups[0]["lr"]
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a, b), f"step {step}"
    assert ours[0].bias.grad is None and torch.equal(ours[0].bias, _model(0)[0].bias)  # frozen: untouched
    if schedule:
        assert opt.lr == 0.0  # the cosine reaches 0 at the last step


def test_training_does_not_import_dynamo():
    code = """
import sys, torch
from pipeline.config import TrainParams
from pipeline.training.loop import fit
model = torch.nn.Linear(4, 2)
batches = lambda epoch: [((torch.randn(8, 4),), torch.randint(0, 2, (8, 2)))]
fit(model, batches, 1, TrainParams(epochs=2, batch_size=8, lr=0.1, schedule="cosine"), torch.device("cpu"), "t")
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
