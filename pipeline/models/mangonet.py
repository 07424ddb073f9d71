"""MangoNet: metadata-neighbourhood graph co-attention network, paper eq. 4-11.

Legend: B batch, M neighbours, N = M + 1 graph nodes (node 0 is the target image i),
C labels, D channels, P = H*W positions, Hd the hidden size of psi.

Inputs come from the feature store and the trained InsAtten module (stage-wise training,
section 3.2): phi (conv maps), beta (attention maps) and y (confidence logits) of the target and
its m neighbours. Only psi, the GCN weight W and the final FC are learnt here.

Choices where the paper is not explicit (each documented where it is used):
- the "confidence vectors" y of eq. 4 and 7 are taken as probabilities sigma(y), so w is a soft
  label overlap in [0, 1];
- an image with fewer than m neighbours is padded and the missing nodes masked out of eq. 7
  (product), the adjacency softmax (eq. 10) and the node mean;
- with `mangonet.coatten_pool` > 1 (the paper's 14x14 -> 7x7), beta is max-pooled as the paper
  says and phi is average-pooled to the same grid (not stated in the paper); the global feature
  is the average of that pooled phi, which equals the average of phi whenever the pool divides
  the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config import MAPS, TARGETS, WEIGHTS, CoAttentionConfig  # noqa: F401  (the variants, for callers)


def coattention_weights(
    p_target: torch.Tensor, p_neigh: torch.Tensor, mask: torch.Tensor, target_mode: str = "literal"
) -> torch.Tensor:
    """Label weights w of every node, eq. 4 (neighbours) and eq. 7 (target).

    eq. 4  w_j = y_i * y_zj                     (element-wise over the C labels)
    eq. 7  w   = y_i * y_z1 * ... * y_zm         ("literal"; "geomean": y_i * (prod_j y_zj)^(1/m);
                                                 "mean": y_i * mean_j y_zj)

    Shapes: p_target (B, C), p_neigh (B, M, C) confidences, mask (B, M) bool -> w (B, N, C),
    node 0 the target. Missing neighbours are left out of the product and the means.
    """
    w_neigh = p_target.unsqueeze(1) * p_neigh  # (B, M, C)                      eq. 4
    valid = mask.unsqueeze(-1)  # (B, M, 1)
    count = valid.sum(dim=1).clamp(min=1)  # (B, 1) existing neighbours
    if target_mode in ("literal", "geomean"):
        prod = torch.where(valid, p_neigh, torch.ones_like(p_neigh)).prod(dim=1)  # (B, C)
        if target_mode == "geomean":  # sign-safe m-th root (logit weights can be negative)
            prod = prod.sign() * prod.abs().pow(1.0 / count)
        w_target = p_target * prod  # (B, C)                                     eq. 7
    elif target_mode == "mean":
        w_target = p_target * (p_neigh * valid).sum(dim=1) / count  # (B, C)
    else:
        raise ValueError(f"target_mode must be one of {', '.join(TARGETS)}, got {target_mode!r}")
    return torch.cat([w_target.unsqueeze(1), w_neigh], dim=1)  # (B, N, C)


def attention_maps(beta: torch.Tensor, maps: str) -> torch.Tensor:
    """The maps that eq. 5 weights: beta itself, InsAtten's scores (log beta) or beta * P.

    Shapes: beta (B, N, C, P) -> (B, N, C, P)."""
    if maps == "beta":
        return beta
    if maps == "scores":
        return beta.clamp(min=1e-8).log()  # x - logsumexp_P(x): the scores up to a per-map constant
    if maps == "beta_p":
        return beta * beta.shape[-1]
    raise ValueError(f"maps must be one of {', '.join(MAPS)}, got {maps!r}")


def coattention(w: torch.Tensor, beta: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Co-attention maps, eq. 5 / eq. 8: alpha = softmax_P(sum_k w^k beta^k / temperature).

    Shapes: w (B, N, C), beta (B, N, C, P) -> alpha (B, N, P), sum_P alpha = 1.
    """
    logits = torch.einsum("bnc,bncp->bnp", w, beta)  # (B, N, P)
    return (logits / temperature).softmax(dim=-1)  # (B, N, P)


def coattention_shared(w: torch.Tensor, maps: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """`coattention` for W weightings of one node's maps: alpha = softmax_P(sum_k w^k maps^k / T).

    Shapes: w (B, W, C), maps (B, C, P) -> alpha (B, W, P); the maps are not copied W times.
    """
    logits = torch.einsum("bwc,bcp->bwp", w, maps)  # (B, W, P)
    return (logits / temperature).softmax(dim=-1)


def normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of distributions over the last axis divided by log(P): 1 = uniform, 0 = one-hot.

    Shapes: p (..., P), each row summing to 1 -> (...)."""
    logp = p.clamp(min=1e-12).log()
    return -(p * logp).sum(dim=-1) / math.log(p.shape[-1])


def attend(alpha: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Attended node features, eq. 6 / eq. 9: z^ = sum_P alpha * phi.

    Shapes: alpha (B, N, P), phi (B, N, D, P) -> (B, N, D).
    """
    return torch.einsum("bnp,bndp->bnd", alpha, phi)  # (B, N, D)


def adjacency(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-softmax-normalised correlation matrix S, eq. 10: s(k, l) = psi(z^_k)^T psi(z^_l).

    Masked (missing) nodes get no incoming edges. Shapes: h (B, N, Hd), mask (B, N) -> S (B, N, N).
    """
    s = h @ h.transpose(1, 2)  # (B, N, N)
    s = s.masked_fill(~mask.unsqueeze(1), float("-inf"))  # no edge into a missing node
    return s.softmax(dim=-1)  # (B, N, N), rows sum to 1


class GraphConv(nn.Module):
    """One GCN layer with ReLU and residual, eq. 11: Z' = ReLU(S Z^ W) + Z^.

    Shapes: S (B, N, N), Z (B, N, D) -> (B, N, D). W is D x D without bias, as in eq. 11.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Linear(dim, dim, bias=False)

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(s @ self.weight(z)) + z  # (B, N, D)


@dataclass(frozen=True)
class MangoNetConfig:
    """What a MangoNet is made of (the checkpoint's `config` rebuilds it)."""

    dim: int  # D, channels of the conv maps phi
    num_labels: int  # C
    hidden: int = 512  # eq. 10's FC state size
    nodes: str = "coatten"  # coatten (the paper) | holistic (NGCN: average-pooled phi)
    global_feature: bool = True  # False: "MangoNet w/o GF"
    coatten: CoAttentionConfig = CoAttentionConfig()


class MangoNet(nn.Module):
    """Co-attention guided GCN over the target and its metadata neighbours (Fig. 2, eq. 4-11).

    nodes="coatten" is the paper's model; nodes="holistic" (average-pooled phi as node features)
    is the NGCN ablation; global_feature=False is the "MangoNet w/o GF" ablation.

    Shapes: phi (B, N, D, P), beta (B, N, C, P), y (B, N, C) logits, mask (B, N) bool with
    mask[:, 0] True (the target) -> logits (B, C).
    """

    def __init__(self, config: MangoNetConfig) -> None:
        super().__init__()
        if config.nodes not in ("coatten", "holistic"):
            raise ValueError(f"nodes must be coatten or holistic, got {config.nodes!r}")
        self.config = config
        self.nodes, self.global_feature, self.coatten = config.nodes, config.global_feature, config.coatten
        coatten, dim = config.coatten, config.dim
        self.psi = nn.Linear(dim, config.hidden)  # eq. 10: FC with hidden state size 512
        self.gcn = GraphConv(dim)  # eq. 11
        self.fc = nn.Linear(2 * dim if config.global_feature else dim, config.num_labels)
        log_t = torch.tensor(float(coatten.temperature)).log()
        if coatten.learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t, persistent=False)  # in the checkpoint's config

    @property
    def learns_coattention(self) -> bool:
        """Whether eq. 4-9 hold a learnt parameter (then node features cannot be computed once)."""
        return self.nodes == "coatten" and self.coatten.learn_temperature

    def node_features(self, phi: torch.Tensor, beta: torch.Tensor, y: torch.Tensor,
                      mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Z^ (B, N, D) and the co-attention maps alpha (B, N, P) (None for holistic nodes)."""
        if self.nodes == "holistic":
            return phi.mean(dim=-1), None  # (B, N, D)
        cfg = self.coatten
        conf = torch.sigmoid(y) if cfg.weights == "prob" else y  # (B, N, C) confidences
        w = coattention_weights(conf[:, 0], conf[:, 1:], mask[:, 1:], cfg.target)  # (B, N, C)
        maps = attention_maps(beta, cfg.maps)  # (B, N, C, P)
        alpha = coattention(w, maps, self.log_temperature.exp())  # (B, N, P)   eq. 5, 8
        return attend(alpha, phi), alpha  # (B, N, D)                           eq. 6, 9

    def forward(self, phi: torch.Tensor, beta: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z, _ = self.node_features(phi, beta, y, mask)  # (B, N, D)
        return self.head(z, phi[:, 0].mean(dim=-1), mask)

    def head(self, z: torch.Tensor, target_global: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The learnt part, eq. 10-11 and the classifier, from node features z (B, N, D), the target's
        average-pooled phi(i) (B, D) and the node mask (B, N): logits (B, C)."""
        s = adjacency(self.psi(z), mask)  # (B, N, N)                           eq. 10
        z = self.gcn(s, z)  # (B, N, D)                                         eq. 11
        m = mask.unsqueeze(-1).to(z.dtype)  # (B, N, 1)
        graph = (z * m).sum(dim=1) / m.sum(dim=1)  # (B, D) mean over the existing nodes
        if self.global_feature:
            graph = torch.cat([graph, target_global], dim=-1)  # (B, 2D)
        return self.fc(graph)  # (B, C)
