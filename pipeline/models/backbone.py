"""The backbone: any torchvision classification model with a convolutional trunk, whose last
feature map before global pooling is phi(i) (paper section 3.2), plus a new multi-label head.

Models come from torchvision's own registry (`list_models`, `get_model`, `get_model_weights`);
the trunk is cut out of the model's graph with `torchvision.models.feature_extraction` at the
node that feeds global average pooling (or at `backbone.node`). `resnet10` (torchvision's ResNet
class with one BasicBlock per stage, random init only) is kept as the smallest model.

`output_stride` removes the last downsampling steps and dilates every later convolution instead
(as DeepLab does), so a smaller input still gives the paper's 7x7 co-attention grid: MobileNetV2
at 112 px gives 4x4 maps at its native stride 32 and 7x7 at stride 16.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import torch
from torch import nn

from pipeline.config import BackboneParams, is_weights_member
from pipeline.errors import MangoError

log = logging.getLogger(__name__)

EXTRA_ARCHS = ("resnet10",)  # not in torchvision's registry: built from its ResNet class
# Node names of a global average pooling in torchvision's classification graphs: `avgpool`
# modules (ResNet, RegNet, EfficientNet, ConvNeXt, MobileNetV3, ...) and the functional
# `adaptive_avg_pool2d` (MobileNetV2, DenseNet).
_POOL_NODE = re.compile(r"(^|\.)(avgpool|adaptive_avg_pool2d(_\d+)?|global_pool)$")
PROBE_SIZE = 224  # input side of the shape probe that locates downsampling steps


@functools.cache
def available_archs() -> tuple[str, ...]:
    """Every classification model name in torchvision's registry, plus `resnet10`."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models))) + EXTRA_ARCHS


def check_arch(arch: str) -> None:
    if arch not in available_archs():
        raise MangoError(f"backbone.arch: unknown model '{arch}'. Valid names (torchvision's classification "
                         f"models with a convolutional trunk, plus resnet10): {', '.join(available_archs())}")


def _classifier(arch: str, weights: str) -> nn.Module:
    """The whole torchvision classifier `arch`, with ImageNet weights when weights == imagenet."""
    import torchvision

    check_arch(arch)
    if arch == "resnet10":
        if weights != "none":
            raise MangoError("backbone.weights: torchvision has no ImageNet weights for resnet10; use e.g. resnet18 "
                             "or mobilenet_v2")
        from torchvision.models.resnet import BasicBlock, ResNet

        return ResNet(BasicBlock, [1, 1, 1, 1])
    if weights == "none":
        return torchvision.models.get_model(arch, weights=None)
    enum = imagenet_weights(arch, weights)
    try:  # torchvision's own path: the hub cache, else a download checked against the hash in the file name
        return torchvision.models.get_model(arch, weights=enum)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash is a RuntimeError
        raise MangoError(f"backbone.weights: cannot load {arch} {enum} ({exc}). It downloads from {enum.url} "
                         f"into {torch.hub.get_dir()}/checkpoints/; `make setup` installs mobilenet_v2's offline") from exc


def imagenet_weights(arch: str, weights: str = "imagenet"):
    """The torchvision weights enum member that `weights` names for `arch`.

    `imagenet` is the model's DEFAULT member, unless that file is not in torch's hub cache and
    another ImageNet member's is (offline machines: `make setup` caches MobileNetV2's
    IMAGENET1K_V1); a member name (`IMAGENET1K_V1`) pins one."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    members = list(enum.__members__)
    if weights != "imagenet":
        if weights not in members:
            raise MangoError(f"backbone.weights: {arch} has no weights '{weights}'; it has {', '.join(members)} "
                             f"(or none, imagenet, a checkpoint path)")
        return enum[weights]
    cached = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT and "IMAGENET" in w.name]
    for member in candidates:
        if (cached / Path(member.url).name).is_file():
            if member is not enum.DEFAULT:
                log.info("backbone: %s's default %s is not cached; using the cached %s", arch, enum.DEFAULT, member)
            return member
    return enum.DEFAULT


def _trunk_node(graph: nn.Module, arch: str, node: str) -> str:
    from torchvision.models.feature_extraction import get_graph_node_names

    _, names = get_graph_node_names(graph)
    if node:
        if node not in names:
            raise MangoError(f"backbone.node: '{node}' is not a node of {arch}; its last nodes are {', '.join(names[-12:])}")
        return node
    pools = [i for i, name in enumerate(names) if _POOL_NODE.search(name)]
    if not pools or pools[-1] == 0:
        raise MangoError(f"backbone.arch: {arch} has no global average pooling after a convolutional trunk "
                         f"(a transformer?); pick a convolutional model or name the map with backbone.node")
    return names[pools[-1] - 1]  # the map that the classifier pools


def set_output_stride(model: nn.Module, output_stride: int) -> None:
    """Turn the stride-2 convolutions that would take the map below 1/output_stride of the input into
    stride 1 and dilate every later convolution by the stride it lost (DeepLab's rule: the strided
    conv keeps the dilation it had, the ones after it double theirs).

    A shape probe finds each convolution's input stride r; a conv with r >= output_stride runs on
    a map that is now r / output_stride times finer than it would have been.
    """
    convs: list[tuple[nn.Conv2d, int]] = []
    pools: list[nn.Module] = []

    def hook(module: nn.Module, args: tuple) -> None:
        stride = PROBE_SIZE // args[0].shape[-1]  # the input's stride relative to the image
        if isinstance(module, nn.Conv2d):
            convs.append((module, stride))
        elif stride >= output_stride and getattr(module, "stride", 1) not in (1, (1, 1)):
            pools.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
    for h in handles:
        h.remove()
    if pools:
        raise MangoError(f"backbone.output_stride {output_stride}: this model downsamples by pooling late in its trunk "
                         f"({type(pools[0]).__name__}); use its native stride (backbone.output_stride: 0)")
    for conv, r in convs:
        if r < output_stride:
            continue
        k, s = conv.kernel_size[0], conv.stride[0]
        if s > 1 and k % 2 == 0:
            raise MangoError(f"backbone.output_stride {output_stride}: a {k}x{k} stride-{s} convolution (ConvNeXt-style "
                             f"patchify) cannot keep its grid; use backbone.output_stride: 0")
        dilation = conv.dilation[0] * (r // output_stride)
        if s > 1:
            conv.stride = (1, 1)
        if k > 1:
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation * (k - 1) // 2,) * 2


class Backbone(nn.Module):
    """Trunk (a torchvision feature extractor) + multi-label head. `maps` gives phi, `forward`
    the Multi-CNN logits.

    Shapes: x (B, 3, H_in, W_in) -> phi (B, D, H, W) -> pooled (B, D) -> logits (B, C).
    """

    def __init__(self, trunk: nn.Module, dim: int, num_labels: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.dim = dim  # D
        self.fc = nn.Linear(dim, num_labels)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)["phi"]  # (B, D, H, W)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)  # (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.maps(x).mean(dim=(2, 3)))  # (B, C)

    def blocks(self) -> list[str]:
        """The trunk's blocks in forward order (`features.17`, `layer4.1`, `conv1`): the units of
        `finetune.train_blocks`."""
        seen: dict[str, None] = {}
        for name, _ in self.trunk.named_parameters():
            parts = name.split(".")  # a container's blocks are its children (features.17); a layer is its own
            leaf = any(True for _ in self.trunk.get_submodule(parts[0]).parameters(recurse=False))
            seen.setdefault(".".join(parts[:1 if leaf or len(parts) < 3 else 2]), None)
        return list(seen)

    def freeze(self, train_blocks: int) -> None:
        """Train only the head and the last `train_blocks` trunk blocks (-1: everything)."""
        if train_blocks < 0:
            return
        blocks = self.blocks()
        trainable = set(blocks[len(blocks) - train_blocks:]) if train_blocks else set()
        for name, p in self.trunk.named_parameters():
            p.requires_grad = any(name == b or name.startswith(b + ".") for b in trainable)

    def train(self, mode: bool = True) -> Backbone:
        """Frozen blocks stay in eval mode: their batch-norm statistics are ImageNet's, not a batch's."""
        super().train(mode)
        if mode:
            for module in self.trunk.modules():
                params = list(module.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    module.eval()
        return self


def build_backbone(arch: str, num_labels: int, weights: str = "none", node: str = "", output_stride: int = 0) -> Backbone:
    """Backbone for torchvision model `arch` with weights none | imagenet | <checkpoint path>.

    `node`: the graph node whose output is phi ("" = the one global pooling reads);
    `output_stride`: 0 keeps the model's own, 16 or 8 dilate the last stage(s) instead.
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    classifier = _classifier(arch, weights if weights == "imagenet" or is_weights_member(weights) else "none")
    if output_stride:
        set_output_stride(classifier, output_stride)
    trunk = create_feature_extractor(classifier.eval(), return_nodes={_trunk_node(classifier, arch, node): "phi"})
    with torch.no_grad():
        probe = trunk(torch.zeros(1, 3, 64, 64))["phi"]
    if probe.dim() != 4:
        raise MangoError(f"backbone: {arch}'s map at '{node or 'the pooled node'}' has shape {tuple(probe.shape)}, "
                         f"not (B, D, H, W)")
    model = Backbone(trunk, probe.shape[1], num_labels)
    if weights not in ("none", "imagenet") and not is_weights_member(weights):
        path = Path(weights)
        if not path.is_file():
            raise MangoError(f"backbone.weights: checkpoint '{path}' not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.get("model", state).items() if not k.startswith("fc.")}  # new label head
        missing, _ = model.load_state_dict(state, strict=False)
        trunk_missing = [k for k in missing if not k.startswith("fc.")]
        if trunk_missing:
            raise MangoError(f"backbone.weights: '{path}' does not fit {arch} (missing e.g. {trunk_missing[0]})")
    return model


def backbone_from_params(backbone: BackboneParams, num_labels: int, weights: str | None = None) -> Backbone:
    """The backbone that `backbone` params describe (weights: override, e.g. "none" before loading a checkpoint)."""
    return build_backbone(backbone.arch, num_labels, backbone.weights if weights is None else weights,
                          node=backbone.node, output_stride=backbone.output_stride)


def weights_used(backbone: BackboneParams) -> str:
    """What `backbone.weights` resolved to: the torchvision enum member (e.g. MobileNet_V2_Weights.IMAGENET1K_V1),
    the checkpoint path, or none."""
    if backbone.weights == "none" or Path(backbone.weights).is_file():
        return backbone.weights
    return str(imagenet_weights(backbone.arch, backbone.weights))
