"""The backbone: torchvision's registry and feature extraction for every convolutional family,
the DeepLab-style output stride, frozen blocks, weights resolution and checkpoints."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from pipeline.errors import MangoError
from pipeline.models.backbone import available_archs, build_backbone, imagenet_weights

FAMILIES = ["resnet18", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf"]


def test_the_registry_lists_every_family_the_pipeline_promises():
    names = set(available_archs())
    wanted = ([f"resnet{n}" for n in (10, 18, 34, 50, 101, 152)] + ["mobilenet_v2", "mobilenet_v3_large"]
              + [f"efficientnet_b{i}" for i in range(8)] + ["convnext_tiny", "convnext_small", "convnext_base"])
    assert set(wanted) <= names
    assert any(n.startswith("regnet_") for n in names)


@pytest.mark.parametrize("arch", FAMILIES)
def test_every_family_gives_conv_maps_and_a_head(arch):
    model = build_backbone(arch, 5).eval()
    with torch.no_grad():
        phi = model.maps(torch.randn(2, 3, 64, 64))
        logits = model(torch.randn(2, 3, 64, 64))
    assert phi.dim() == 4 and phi.shape[:2] == (2, model.dim) and phi.shape[-1] == 2  # stride 32 at 64 px
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf"])
def test_output_stride_16_doubles_the_grid(arch):
    with torch.no_grad():
        native = build_backbone(arch, 3).eval().maps(torch.zeros(1, 3, 112, 112))
        dilated = build_backbone(arch, 3, output_stride=16).eval().maps(torch.zeros(1, 3, 112, 112))
    assert native.shape[-2:] == (4, 4) and dilated.shape[-2:] == (7, 7)  # 7x7 = the paper's co-attention grid
    assert dilated.shape[1] == native.shape[1]


def test_output_stride_matches_torchvisions_own_dilated_resnet():
    """The generic stride surgery gives exactly torchvision's replace_stride_with_dilation=[F, F, T]."""
    torch.manual_seed(0)
    ours = build_backbone("resnet50", 3, output_stride=16).eval()
    reference = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True]).eval()
    trunk = {k.removeprefix("trunk."): v for k, v in ours.state_dict().items() if k.startswith("trunk.")}
    reference.load_state_dict(trunk, strict=False)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        want = nn.Sequential(*list(reference.children())[:-2])(x)
        got = ours.maps(x)
    assert got.shape == want.shape == (1, 2048, 6, 6)
    torch.testing.assert_close(got, want)


def test_patchify_downsampling_cannot_be_dilated():
    with pytest.raises(MangoError, match="ConvNeXt-style patchify"):
        build_backbone("convnext_tiny", 3, output_stride=16)


def test_unknown_or_non_convolutional_models_are_named():
    with pytest.raises(MangoError, match=r"unknown model 'resnet11'. Valid names .*mobilenet_v2.*resnet10"):
        build_backbone("resnet11", 3)
    with pytest.raises(MangoError, match="no global average pooling"):
        build_backbone("vit_b_16", 3)
    with pytest.raises(MangoError, match="'nope' is not a node of resnet10"):
        build_backbone("resnet10", 3, node="nope")


def test_an_explicit_node_cuts_the_trunk_there():
    model = build_backbone("mobilenet_v2", 3, node="features.17.conv.3", output_stride=16).eval()
    with torch.no_grad():
        assert model.maps(torch.zeros(1, 3, 112, 112)).shape == (1, 320, 7, 7)


def test_freeze_trains_only_the_top_blocks_and_keeps_frozen_batch_norm_in_eval():
    model = build_backbone("mobilenet_v2", 3)
    model.freeze(2)
    blocks = model.blocks()
    assert blocks[:2] == ["features.0", "features.1"] and blocks[-1] == "features.18" and len(blocks) == 19
    trainable = {n.split(".")[1] for n, p in model.trunk.named_parameters() if p.requires_grad}
    assert trainable == {"17", "18"}
    model.train()
    bns = dict(model.trunk.named_modules())
    assert not bns["features.0.1"].training and bns["features.18.1"].training
    x = torch.randn(4, 3, 64, 64)
    model(x).sum().backward()
    assert model.trunk.get_submodule("features.0.0").weight.grad is None
    assert model.trunk.get_submodule("features.18.0").weight.grad is not None and model.fc.weight.grad is not None
    model.freeze(0)
    assert not any(p.requires_grad for p in model.trunk.parameters())


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = build_backbone("efficientnet_b0", 4, output_stride=16).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "b.pt")
    again = build_backbone("efficientnet_b0", 4, output_stride=16)
    again.load_state_dict(torch.load(tmp_path / "b.pt", weights_only=True)["model"])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x))
    with pytest.raises(MangoError, match="does not fit resnet18"):
        build_backbone("resnet18", 4, weights=str(tmp_path / "b.pt"))


def test_channels_last_gives_the_same_maps():
    model = build_backbone("mobilenet_v2", 3, output_stride=16).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model.maps(x)
        got = model.to(memory_format=torch.channels_last).maps(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_imagenet_prefers_the_default_weights_and_falls_back_to_a_cached_member(tmp_path, monkeypatch):
    enum = torchvision.models.MobileNet_V2_Weights
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert imagenet_weights("mobilenet_v2") is enum.DEFAULT  # nothing cached: the default downloads
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / enum.IMAGENET1K_V1.url.rsplit("/", 1)[1]).touch()
    assert imagenet_weights("mobilenet_v2") is enum.IMAGENET1K_V1  # offline: the cached member
    (tmp_path / "checkpoints" / enum.DEFAULT.url.rsplit("/", 1)[1]).touch()
    assert imagenet_weights("mobilenet_v2") is enum.DEFAULT
    assert imagenet_weights("mobilenet_v2", "IMAGENET1K_V1") is enum.IMAGENET1K_V1
    with pytest.raises(MangoError, match="mobilenet_v2 has no weights 'IMAGENET9K'; it has IMAGENET1K_V1, IMAGENET1K_V2"):
        imagenet_weights("mobilenet_v2", "IMAGENET9K")
