"""Instance-level attention (InsAtten), paper eq. 1-3, after SRN [Zhu et al. 2017].

Legend: B batch, C labels, D channels, H W grid, P = H*W positions.
"""

from __future__ import annotations

import torch
from torch import nn


class InsAtten(nn.Module):
    """Per-label spatial attention beta and confidences y from conv features phi.

    eq. 1  x = q(phi; eta): conv1x1(D->512) -> ReLU -> conv3x3(512->512) -> ReLU -> conv1x1(512->C)
    eq. 2  beta = softmax over the H*W positions, separately for each label k
    eq. 3  (reformulated as in SRN) E = conv1x1(D->C)(phi), y_k = sum_l beta_k[l] * E_k[l]

    Shapes: phi (B, D, H, W) -> y (B, C) logits, beta (B, C, P) with sum_P beta = 1.
    """

    def __init__(self, in_channels: int, num_labels: int, hidden: int = 512) -> None:
        super().__init__()
        self.q = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_labels, kernel_size=1),
        )
        self.confidence = nn.Conv2d(in_channels, num_labels, kernel_size=1)

    def forward(self, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.q(phi).flatten(2)  # (B, C, P)                                 eq. 1
        beta = x.softmax(dim=-1)  # (B, C, P)                                     eq. 2
        conf = self.confidence(phi).flatten(2)  # (B, C, P) confidence maps E
        y = (beta * conf).sum(dim=-1)  # (B, C)                                    eq. 3
        return y, beta
