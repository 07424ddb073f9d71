"""The backbone: a torchvision ResNet whose last conv block gives phi(i) (paper section 3.2).

`resnet10` is torchvision's ResNet class with one BasicBlock per stage: the CPU-sized default
of the embedded dataset. The paper uses `resnet101` with ImageNet weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from pipeline.config import BACKBONE_ARCHS
from pipeline.errors import MangoError


class Backbone(nn.Module):
    """ResNet trunk + multi-label head. `maps` gives phi, `forward` the Multi-CNN logits.

    Shapes: x (B, 3, H_in, W_in) -> phi (B, D, H, W) -> pooled (B, D) -> logits (B, C).
    """

    def __init__(self, resnet: ResNet, num_labels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layers = nn.Sequential(resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        self.dim = resnet.fc.in_features  # D: 512 for BasicBlock ResNets, 2048 for Bottleneck ones
        self.fc = nn.Linear(self.dim, num_labels)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))  # (B, D, H, W)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)  # (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.maps(x).mean(dim=(2, 3)))  # (B, C)


def build_backbone(arch: str, num_labels: int, weights: str = "none") -> Backbone:
    """torchvision ResNet `arch` with weights none | imagenet | <checkpoint path>, new C-way head."""
    if arch not in BACKBONE_ARCHS:
        raise MangoError(f"backbone.arch must be one of {', '.join(BACKBONE_ARCHS)}, got '{arch}'")
    if arch == "resnet10":
        if weights == "imagenet":
            raise MangoError("backbone.weights: no ImageNet weights exist for resnet10; use resnet18 or larger")
        resnet = ResNet(BasicBlock, [1, 1, 1, 1])
    elif weights == "imagenet":
        enum = torchvision.models.get_model_weights(arch).DEFAULT  # downloads on first use
        resnet = torchvision.models.get_model(arch, weights=enum)
    else:
        resnet = torchvision.models.get_model(arch, weights=None)
    model = Backbone(resnet, num_labels)
    if weights not in ("none", "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise MangoError(f"backbone.weights: checkpoint '{path}' not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.get("model", state).items() if not k.startswith("fc.")}  # new label head
        missing, unexpected = model.load_state_dict(state, strict=False)
        trunk_missing = [k for k in missing if not k.startswith("fc.")]
        if trunk_missing:
            raise MangoError(f"backbone.weights: '{path}' does not fit {arch} (missing e.g. {trunk_missing[0]})")
    return model
