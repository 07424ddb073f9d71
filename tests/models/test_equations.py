"""Hand-computed checks of paper eq. 1-11 (section 3.1.2) on tiny tensors.

Every expected value below is written as a literal or a `math.exp` expression derived step by step
in the comments; none is obtained by calling the code under test or a torch softmax.
Legend: B batch, M neighbours, N = M + 1 nodes (node 0 the target), C labels, D channels,
P = H*W positions, Hd the hidden size of psi. Everything runs in float64 with tight tolerances.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pipeline.models.insatten import InsAtten
from pipeline.models.mangonet import (
    GraphConv,
    MangoNet,
    MangoNetConfig,
    adjacency,
    attend,
    coattention,
    CoAttentionConfig,
    attention_maps,
    coattention_weights,
)

F64 = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)
E = math.e
LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2


def t(x) -> torch.Tensor:
    return x.to(F64) if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=F64)


def set_(param: torch.Tensor, value) -> None:
    with torch.no_grad():
        param.copy_(t(value).reshape(param.shape))


# --------------------------------------------------------------------------------------------
# eq. 1-3: InsAtten
# --------------------------------------------------------------------------------------------


def test_insatten_layer_structure_matches_paper():
    """eta: 512 kernels 1x1 -> 512 kernels 3x3 -> C kernels 1x1; E: C kernels 1x1 on phi."""
    m = InsAtten(in_channels=8, num_labels=3)
    convs = [layer for layer in m.q if isinstance(layer, nn.Conv2d)]
    assert len(convs) == 3
    assert [c.out_channels for c in convs] == [512, 512, 3]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
    assert [c.in_channels for c in convs] == [8, 512, 512]
    assert convs[1].padding == (1, 1)  # x keeps the H x W grid (x in R^{H x W x C})
    assert isinstance(m.confidence, nn.Conv2d)
    assert (m.confidence.in_channels, m.confidence.out_channels) == (8, 3)
    assert m.confidence.kernel_size == (1, 1)
    y, beta = m(torch.randn(2, 8, 3, 4))
    assert y.shape == (2, 3) and beta.shape == (2, 3, 12)  # (B, C), (B, C, P)


def _hand_insatten() -> InsAtten:
    """D=2, C=2, hidden=2, all biases zero.

    conv1 (1x1) A1 = [[1, 0], [-1, 1]]; conv2 (3x3) identity at the centre tap, zero elsewhere;
    conv3 (1x1) A3 = I; confidence conv (1x1) B = [[1, 0], [0, -1]].
    """
    m = InsAtten(in_channels=2, num_labels=2, hidden=2).double()
    q1, q2, q3 = m.q[0], m.q[2], m.q[4]
    set_(q1.weight, [[1.0, 0.0], [-1.0, 1.0]])
    k = torch.zeros(2, 2, 3, 3, dtype=F64)
    k[0, 0, 1, 1] = k[1, 1, 1, 1] = 1.0
    set_(q2.weight, k)
    set_(q3.weight, [[1.0, 0.0], [0.0, 1.0]])
    set_(m.confidence.weight, [[1.0, 0.0], [0.0, -1.0]])
    for conv in (q1, q2, q3, m.confidence):
        nn.init.zeros_(conv.bias)
    return m


def test_insatten_eq1_to_3_by_hand():
    # phi: 1 x 2 map (P=2), channels: ch0 = [1, 3], ch1 = [2, 1]; positions l0=(1, 2), l1=(3, 1).
    phi = t([[[[1.0, 3.0]], [[2.0, 1.0]]]])  # (B=1, D=2, H=1, W=2)
    y, beta = _hand_insatten()(phi)
    # conv1: l0 -> (1, -1 + 2) = (1, 1); l1 -> (3, -3 + 1) = (3, -2) -> ReLU -> (3, 0)
    # conv2 (identity centre tap, zero padding) + ReLU: unchanged (1, 1), (3, 0)
    # conv3 = I: x_label0 = [1, 3], x_label1 = [1, 0]   (without the ReLU: [1, -2])
    # eq. 2 softmax over positions:
    #   beta_0 = [e^1, e^3] / (e^1 + e^3) = [a, 1 - a],  a = 1 / (1 + e^2) ~ 0.1192
    #   beta_1 = [e^1, e^0] / (e^1 + 1)   = [1 - b, b],  b = 1 / (1 + e)   ~ 0.2689
    a = 1.0 / (1.0 + math.exp(2.0))
    b = 1.0 / (1.0 + E)
    assert_close(beta, t([[[a, 1.0 - a], [1.0 - b, b]]]), **TOL)
    assert_close(beta.sum(-1), t([[1.0, 1.0]]), **TOL)  # sums to 1 over positions, per label
    # eq. 3 (SRN form): E_0 = ch0 = [1, 3], E_1 = -ch1 = [-2, -1]
    #   y_0 = a*1 + (1-a)*3 = 3 - 2a ~ 2.7616;  y_1 = (1-b)*(-2) + b*(-1) = -2 + b ~ -1.7311
    assert_close(y, t([[3.0 - 2.0 * a, -2.0 + b]]), **TOL)


def test_insatten_relu_after_each_hidden_conv_and_none_after_the_last():
    # conv2: centre tap only, K = [[1, 1], [0, -1]] (ch0' = ch0 + ch1, ch1' = -ch1);
    # conv3: A3 = [[1, 0], [-1, 1]] (x_0 = ch0'', x_1 = ch1'' - ch0'').
    m = _hand_insatten()
    k = torch.zeros(2, 2, 3, 3, dtype=F64)
    k[:, :, 1, 1] = t([[1.0, 1.0], [0.0, -1.0]])
    set_(m.q[2].weight, k)
    set_(m.q[4].weight, [[1.0, 0.0], [-1.0, 1.0]])
    phi = t([[[[1.0, 3.0]], [[2.0, 1.0]]]])
    y, beta = m(phi)
    # conv1 + ReLU: l0 (1, 1), l1 (3, -2) -> (3, 0)
    # conv2: l0 (1 + 1, -1) = (2, -1) -> ReLU -> (2, 0);  l1 (3 + 0, 0) = (3, 0)
    # conv3: x_0 = [2, 3], x_1 = [0 - 2, 0 - 3] = [-2, -3]   (negative: no ReLU after the last conv)
    # beta_0 = [e^2, e^3] / (e^2 + e^3) = [b, 1 - b];  beta_1 = [e^-2, e^-3] / (...) = [1 - b, b]
    # (without the 1st ReLU x_0 = [2, 1]; without the 2nd x_1 = [-3, -3]; with a 3rd x_1 = [0, 0])
    b = 1.0 / (1.0 + E)
    assert_close(beta, t([[[b, 1.0 - b], [1.0 - b, b]]]), **TOL)
    # eq. 3: E_0 = [1, 3], E_1 = [-2, -1]: y = [b + 3(1 - b), -2(1 - b) - b] = [3 - 2b, -2 + b]
    assert_close(y, t([[3.0 - 2.0 * b, -2.0 + b]]), **TOL)


def test_insatten_3x3_conv_reads_neighbouring_positions_with_zero_padding():
    # Same net, but the 3x3 kernel of hidden channel 0 takes its input from the RIGHT neighbour
    # (tap [1, 2]) instead of the centre. On the 1x2 map: l0 reads l1, l1 reads the zero padding.
    m = _hand_insatten()
    k = torch.zeros(2, 2, 3, 3, dtype=F64)
    k[0, 0, 1, 2] = 1.0
    k[1, 1, 1, 1] = 1.0
    set_(m.q[2].weight, k)
    phi = t([[[[1.0, 3.0]], [[2.0, 1.0]]]])
    _, beta = m(phi)
    # after conv1+ReLU: ch0 = [1, 3], ch1 = [1, 0]; conv2: ch0 = [3, 0] (shifted, padded), ch1 = [1, 0]
    # x_label0 = [3, 0] -> beta_0 = [e^3, 1] / (e^3 + 1); x_label1 = [1, 0] -> [1 - b, b] as before
    c = 1.0 / (1.0 + math.exp(3.0))
    b = 1.0 / (1.0 + E)
    assert_close(beta, t([[[1.0 - c, c], [1.0 - b, b]]]), **TOL)


# --------------------------------------------------------------------------------------------
# eq. 4 / eq. 7: label weights w
# --------------------------------------------------------------------------------------------

P_T = [[0.5, 0.8]]  # (B=1, C=2) target probabilities
P_N = [[[0.4, 0.5], [0.25, 1.0]]]  # (B=1, M=2, C=2) neighbour probabilities


def test_eq4_eq7_literal_product():
    w = coattention_weights(t(P_T), t(P_N), torch.tensor([[True, True]]), "literal")
    # eq. 4: w_1 = [0.5*0.4, 0.8*0.5] = [0.2, 0.4];  w_2 = [0.5*0.25, 0.8*1.0] = [0.125, 0.8]
    # eq. 7: w_0 = [0.5*0.4*0.25, 0.8*0.5*1.0] = [0.05, 0.4]
    assert_close(w, t([[[0.05, 0.4], [0.2, 0.4], [0.125, 0.8]]]), **TOL)


def test_eq7_mean_mode():
    w = coattention_weights(t(P_T), t(P_N), torch.tensor([[True, True]]), "mean")
    # w_0 = y_i * mean_j y_zj = [0.5*(0.4+0.25)/2, 0.8*(0.5+1.0)/2] = [0.1625, 0.6]; eq. 4 rows unchanged
    assert_close(w, t([[[0.1625, 0.6], [0.2, 0.4], [0.125, 0.8]]]), **TOL)


@pytest.mark.parametrize("mode", ["literal", "mean"])
def test_eq7_masked_neighbour_is_left_out(mode):
    # neighbour 2 is missing and padded with zeros: had it entered the product, w_0 would be [0, 0];
    # had it entered the mean, w_0 would be halved.
    p_n = t([[[0.4, 0.5], [0.0, 0.0]]])
    w = coattention_weights(t(P_T), p_n, torch.tensor([[True, False]]), mode)
    # w_0 = [0.5*0.4, 0.8*0.5] = [0.2, 0.4] (product and mean over one neighbour agree); w_1 likewise
    assert_close(w[:, :2], t([[[0.2, 0.4], [0.2, 0.4]]]), **TOL)


def test_eq7_rejects_unknown_mode():
    with pytest.raises(ValueError, match="literal, geomean, mean"):
        coattention_weights(t(P_T), t(P_N), torch.tensor([[True, True]]), "max")


def test_eq7_geometric_mean_mode():
    w = coattention_weights(t(P_T), t(P_N), torch.tensor([[True, True]]), "geomean")
    # w_0 = y_i * (prod_j y_zj)^(1/2) = [0.5*sqrt(0.4*0.25), 0.8*sqrt(0.5*1.0)] = [0.5*0.31623, 0.8*0.70711]
    assert_close(w[:, 0], t([[0.5 * math.sqrt(0.1), 0.8 * math.sqrt(0.5)]]), **TOL)
    assert_close(w[:, 1:], t([[[0.2, 0.4], [0.125, 0.8]]]), **TOL)  # eq. 4 rows unchanged
    # one neighbour missing: the root is over the one that exists, [0.5*0.4, 0.8*0.5]
    w = coattention_weights(t(P_T), t([[[0.4, 0.5], [0.0, 0.0]]]), torch.tensor([[True, False]]), "geomean")
    assert_close(w[:, 0], t([[0.2, 0.4]]), **TOL)
    # logit weights can be negative: the root keeps the sign, (-8)^(1/2) is not taken
    w = coattention_weights(t([[1.0, 1.0]]), t([[[-2.0, 2.0], [4.0, 8.0]]]), torch.tensor([[True, True]]), "geomean")
    assert_close(w[:, 0], t([[-math.sqrt(8.0), 4.0]]), **TOL)


# --------------------------------------------------------------------------------------------
# eq. 5 / 8 and eq. 6 / 9
# --------------------------------------------------------------------------------------------


def test_eq5_eq8_softmax_over_positions_of_weighted_beta():
    w = t([[[1.0, 2.0], [0.5, 0.0]]])  # (B=1, N=2, C=2)
    beta = t([[[[0.25, 0.75], [0.5, 0.5]],  # node 0: beta^1, beta^2 over P=2
               [[1.0, 0.0], [0.0, 1.0]]]])  # node 1
    alpha = coattention(w, beta)
    # node 0: logits = 1*[0.25, 0.75] + 2*[0.5, 0.5] = [1.25, 1.75] -> [1, e^0.5] / (1 + e^0.5)
    # node 1: logits = 0.5*[1, 0] + 0*[0, 1] = [0.5, 0]           -> [e^0.5, 1] / (1 + e^0.5)
    r = math.exp(0.5)
    assert_close(alpha, t([[[1 / (1 + r), r / (1 + r)], [r / (1 + r), 1 / (1 + r)]]]), **TOL)
    assert_close(alpha.sum(-1), t([[1.0, 1.0]]), **TOL)


BETA_2 = [[[[0.2, 0.8], [0.5, 0.5]]]]  # (B=1, N=1, C=2, P=2)


def test_eq5_maps_scores_beta_p_and_temperature_by_hand():
    w = t([[[1.0, 2.0]]])  # (B=1, N=1, C=2)
    # beta: logits = 1*[0.2, 0.8] + 2*[0.5, 0.5] = [1.2, 1.8] -> a difference of 0.6
    # scores (log beta): 1*[ln 0.2, ln 0.8] + 2*[ln 0.5, ln 0.5] -> a difference of ln 4: alpha = [1/5, 4/5]
    # beta_p (beta * P = 2 beta): a difference of 1.2
    # temperature 0.5 doubles every difference
    cases = {("beta", 1.0): 0.6, ("scores", 1.0): math.log(4.0), ("beta_p", 1.0): 1.2, ("beta", 0.5): 1.2,
             ("scores", 0.5): 2 * math.log(4.0)}
    for (maps, temp), diff in cases.items():
        alpha = coattention(w, attention_maps(t(BETA_2), maps), temp)
        assert_close(alpha, t([[[1 / (1 + math.exp(diff)), 1 - 1 / (1 + math.exp(diff))]]]), **TOL)
    assert_close(coattention(w, attention_maps(t(BETA_2), "scores")), t([[[0.2, 0.8]]]), **TOL)
    with pytest.raises(ValueError, match="beta, scores, beta_p"):
        attention_maps(t(BETA_2), "x")


def test_scores_maps_equal_insattens_pre_softmax_scores():
    """Eq. 5 on log beta equals eq. 5 on InsAtten's scores x (beta = softmax_P x): one softmax normalises."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 9, generator=g, dtype=F64) * 2  # (B, N, C, P) scores of eq. 1
    w = torch.rand(2, 3, 4, generator=g, dtype=F64)
    assert_close(coattention(w, attention_maps(x.softmax(-1), "scores"), 0.7), coattention(w, x, 0.7), **TOL)


def test_mangonet_variant_node_features_by_hand():
    """The paper-literal alpha of the hand case is sharpened by scores maps and a temperature."""
    phi, beta, y, mask = _hand_inputs()
    literal = _hand_model().node_features(phi, beta, y, mask)[1]
    sharp = MangoNet(MangoNetConfig(dim=2, num_labels=2, hidden=2, coatten=CoAttentionConfig(maps="beta_p", temperature=0.25))).double()
    alpha = sharp.node_features(phi, beta, y, mask)[1]
    # beta_p = 2 beta on P = 2 and temperature 1/4: every logit difference is 8x the literal one
    d_lit = torch.log(literal[..., 0] / literal[..., 1])
    assert_close(torch.log(alpha[..., 0] / alpha[..., 1]), 8 * d_lit, rtol=1e-6, atol=1e-6)  # T is stored as float32
    learnt = MangoNet(MangoNetConfig(dim=2, num_labels=2, coatten=CoAttentionConfig(temperature=0.5, learn_temperature=True)))
    assert learnt.learns_coattention and learnt.log_temperature.requires_grad
    assert not MangoNet(MangoNetConfig(dim=2, num_labels=2)).learns_coattention
    assert "log_temperature" in learnt.state_dict()  # learnt: saved with the weights
    assert "log_temperature" not in MangoNet(MangoNetConfig(dim=2, num_labels=2)).state_dict()  # fixed: a param, in the config


def test_mangonet_logit_weights_use_y_itself():
    phi, beta, y, mask = _hand_inputs()
    model = MangoNet(MangoNetConfig(dim=2, num_labels=2, hidden=2, coatten=CoAttentionConfig(weights="logit"))).double()
    w = coattention_weights(y[:, 0], y[:, 1:], mask[:, 1:], "literal")
    want = coattention(w, beta)
    assert_close(model.node_features(phi, beta, y, mask)[1], want, **TOL)


def test_eq6_eq9_weighted_sum_of_phi():
    alpha = t([[[0.25, 0.75], [1.0, 0.0]]])  # (B=1, N=2, P=2)
    phi = t([[[[4.0, 8.0], [0.0, -4.0]],  # node 0: (D=2, P=2)
              [[1.0, 2.0], [3.0, 4.0]]]])  # node 1
    z = attend(alpha, phi)
    # node 0: [0.25*4 + 0.75*8, 0.25*0 + 0.75*(-4)] = [7, -3];  node 1: [1, 3]
    assert_close(z, t([[[7.0, -3.0], [1.0, 3.0]]]), **TOL)


# --------------------------------------------------------------------------------------------
# eq. 10: adjacency
# --------------------------------------------------------------------------------------------

H3 = [[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]  # psi outputs h (B=1, N=3, Hd=2)


def test_eq10_row_softmax_of_h_ht():
    s = adjacency(t(H3), torch.tensor([[True, True, True]]))
    # h h^T = [[1, 0, 1], [0, 1, 1], [1, 1, 2]]
    # row 0: [e, 1, e] / (2e + 1);  row 1: [1, e, e] / (1 + 2e);  row 2: [e, e, e^2] / (2e + e^2)
    d0 = 2 * E + 1
    d2 = 2 * E + E**2
    expected = t([[[E / d0, 1 / d0, E / d0], [1 / d0, E / d0, E / d0], [E / d2, E / d2, E**2 / d2]]])
    assert_close(s, expected, **TOL)
    assert_close(s.sum(-1), t([[1.0, 1.0, 1.0]]), **TOL)


def test_eq10_masked_node_receives_zero_weight():
    s = adjacency(t(H3), torch.tensor([[True, True, False]]))
    # column 2 removed before the row softmax:
    # row 0: [e, 1] / (e + 1);  row 1: [1, e] / (1 + e);  row 2: [e, e] / 2e = [1/2, 1/2]
    expected = t([[[E / (E + 1), 1 / (E + 1), 0.0], [1 / (E + 1), E / (E + 1), 0.0], [0.5, 0.5, 0.0]]])
    assert_close(s, expected, **TOL)
    assert not torch.isnan(s).any()


# --------------------------------------------------------------------------------------------
# eq. 11: graph convolution
# --------------------------------------------------------------------------------------------


def test_eq11_relu_then_residual():
    g = GraphConv(2).double()
    assert g.weight.bias is None  # eq. 11 has no bias
    # paper orientation Z' = S Z W with W = [[1, -1], [0, 2]]; nn.Linear stores W^T
    set_(g.weight.weight, [[1.0, 0.0], [-1.0, 2.0]])
    s = t([[[0.5, 0.5], [1.0, 0.0]]])
    z = t([[[1.0, 2.0], [3.0, -1.0]]])
    # S Z   = [[0.5*1 + 0.5*3, 0.5*2 + 0.5*(-1)], [1, 2]] = [[2, 0.5], [1, 2]]
    # S Z W = [[2, -2 + 1], [1, -1 + 4]]                  = [[2, -1], [1, 3]]
    # ReLU  = [[2, 0], [1, 3]]   (the -1 is clipped)
    # + Z   = [[3, 2], [4, 2]]   (residual after ReLU; ReLU(SZW + Z) would give [[3, 1], [4, 2]])
    assert_close(g(s, z), t([[[3.0, 2.0], [4.0, 2.0]]]), **TOL)


# --------------------------------------------------------------------------------------------
# Full MangoNet forward, by hand
# --------------------------------------------------------------------------------------------
#
# B=1, M=2 (N=3), C=2, D=2, P=2, Hd=2.
# y (logits): target [0, ln3] -> p_t = [1/2, 3/4]; n1 [ln3, 0] -> p_1 = [3/4, 1/2]; n2 [0, 0] -> [1/2, 1/2]
# eq. 4: w_1 = [3/8, 3/8], w_2 = [1/4, 3/8];  eq. 7: w_0 = [1/2*3/4*1/2, 3/4*1/2*1/2] = [3/16, 3/16]
# beta: target [[1, 0], [1, 0]];  n1, n2 [[1, 0], [0, 1]]
# eq. 5/8: target logits [3/16 + 3/16, 0] = [3/8, 0] -> alpha_0 = [s, 1 - s], s = 1 / (1 + e^{-3/8})
#          n1 logits [3/8, 3/8] -> [1/2, 1/2];  n2 logits [1/4, 3/8] (irrelevant: n2's phi is flat)
# phi: target [[4, 0], [2, 2]]; n1 [[2, 0], [0, 0]]; n2 [[0, 0], [1, 1]]
# eq. 6/9: z_0 = [4s, 2], z_1 = [1, 0], z_2 = [0, 1]
# psi: weight [[0, 1], [0, 0]], bias [0, 1] -> h_k = [z_k[1], 1]: h_0 = [2, 1], h_1 = [0, 1], h_2 = [1, 1]
# eq. 10: h h^T = [[5, 1, 3], [1, 1, 1], [3, 1, 2]]
#         S_0 = [e^5, e, e^3] / S0, S0 = e^5 + e + e^3;  S_1 = [1, 1, 1]/3;  S_2 = [e^3, e, e^2] / S2
# eq. 11: W = diag(1, -1): Z W = [[4s, -2], [1, 0], [0, -1]]
#         column 0 of S Z W: r_0 = (4s e^5 + e) / S0, r_1 = (4s + 1) / 3, r_2 = (4s e^3 + e) / S2
#         column 1 is <= 0 in every row -> ReLU -> 0
#         Z' = [[r_0 + 4s, 2], [r_1 + 1, 0], [r_2, 1]]
# node mean: g = [(r_0 + 4s + r_1 + 1 + r_2) / 3, 1];  global feature: mean_P phi_target = [2, 2]
# FC on [g, global]: weight [[1, 0, 2, 0], [0, 1, 0, -1]], bias [0.5, -0.5]
#         out = [g_0 + 2*2 + 0.5, g_1 - 2 - 0.5] = [g_0 + 4.5, -1.5]


def _hand_inputs():
    phi = t([[[[4.0, 0.0], [2.0, 2.0]], [[2.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]])  # (1, 3, 2, 2)
    beta = t([[[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]])  # (1, 3, 2, 2)
    y = t([[[0.0, LN3], [LN3, 0.0], [0.0, 0.0]]])  # (1, 3, 2)
    mask = torch.tensor([[True, True, True]])
    return phi, beta, y, mask


def _hand_model(target_mode: str = "literal", **kw) -> MangoNet:
    m = MangoNet(MangoNetConfig(dim=2, num_labels=2, hidden=2, coatten=CoAttentionConfig(target=target_mode), **kw)).double()
    set_(m.psi.weight, [[0.0, 1.0], [0.0, 0.0]])
    set_(m.psi.bias, [0.0, 1.0])
    set_(m.gcn.weight.weight, [[1.0, 0.0], [0.0, -1.0]])
    if m.global_feature:
        set_(m.fc.weight, [[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
        set_(m.fc.bias, [0.5, -0.5])
    else:
        set_(m.fc.weight, [[1.0, 1.0], [0.0, 1.0]])
        set_(m.fc.bias, [0.0, 0.0])
    return m


def _hand_graph_mean(z0: float) -> float:
    """g_0 for node features [[z0, 2], [1, 0], [0, 1]] (S and W as in the derivation above)."""
    s0 = math.exp(5) + E + math.exp(3)
    s2 = math.exp(3) + E + math.exp(2)
    r0 = (z0 * math.exp(5) + E) / s0
    r1 = (z0 + 1.0) / 3.0
    r2 = (z0 * math.exp(3) + E) / s2
    return (r0 + z0 + r1 + 1.0 + r2) / 3.0


S_HAND = 1.0 / (1.0 + math.exp(-3.0 / 8.0))  # ~ 0.5927


def test_mangonet_defaults_match_paper():
    m = MangoNet(MangoNetConfig(dim=6, num_labels=4))
    assert (m.psi.in_features, m.psi.out_features) == (6, 512)  # psi: FC, hidden state size 512
    assert tuple(m.gcn.weight.weight.shape) == (6, 6)  # W is d x d
    assert m.fc.in_features == 12 and m.fc.out_features == 4  # [graph mean, global] -> C
    assert (m.nodes, m.global_feature, m.coatten) == ("coatten", True, CoAttentionConfig("prob", "beta", 1.0, False, "literal"))


def test_mangonet_node_features_by_hand():
    z, alpha = _hand_model().node_features(*_hand_inputs())
    assert_close(z, t([[[4 * S_HAND, 2.0], [1.0, 0.0], [0.0, 1.0]]]), **TOL)
    assert_close(alpha[:, :2], t([[[S_HAND, 1 - S_HAND], [0.5, 0.5]]]), **TOL)


def test_mangonet_forward_by_hand():
    out = _hand_model()(*_hand_inputs())
    g0 = _hand_graph_mean(4 * S_HAND)  # ~ 2.9087
    assert out.shape == (1, 2)
    assert_close(out, t([[g0 + 4.5, -1.5]]), **TOL)


def test_mangonet_without_global_feature():
    m = _hand_model(global_feature=False)
    assert m.fc.in_features == 2  # D, not 2D
    out = m(*_hand_inputs())
    # FC weight [[1, 1], [0, 1]] on g = [g_0, 1]: [g_0 + 1, 1]
    g0 = _hand_graph_mean(4 * S_HAND)
    assert_close(out, t([[g0 + 1.0, 1.0]]), **TOL)


def test_mangonet_holistic_nodes():
    # node features = mean_P phi: z_0 = [2, 2], z_1 = [1, 0], z_2 = [0, 1]; same h, S, W as above
    # -> g_0 = _hand_graph_mean(2), out = [g_0 + 4.5, -1.5]; beta and y are not used at all
    m = _hand_model(nodes="holistic")
    phi, beta, y, mask = _hand_inputs()
    out = m(phi, beta, y, mask)
    assert_close(out, t([[_hand_graph_mean(2.0) + 4.5, -1.5]]), **TOL)
    assert_close(m(phi, beta.flip(-1), -3 * y, mask), out, **TOL)


def test_mangonet_rejects_unknown_nodes():
    with pytest.raises(ValueError, match="coatten or holistic"):
        MangoNet(MangoNetConfig(dim=2, num_labels=2, nodes="grid"))


def test_mangonet_masked_neighbour_by_hand():
    # n2 missing, its slots filled with junk that must not matter.
    phi, beta, y, _ = _hand_inputs()
    phi[0, 2] = 100.0
    beta[0, 2] = 7.0
    y[0, 2] = -5.0
    mask = torch.tensor([[True, True, False]])
    out = _hand_model()(phi, beta, y, mask)
    # eq. 7: w_0 = p_t * p_1 = [3/8, 3/8] -> target logits [3/4, 0] -> s' = 1 / (1 + e^{-3/4})
    # z_0 = [4s', 2], z_1 = [1, 0]; h_0 = [2, 1], h_1 = [0, 1] -> h h^T = [[5, 1], [1, 1]]
    # S_0 = [e^5, e] / (e^5 + e), S_1 = [1/2, 1/2] (no edge into n2)
    # column 0 of S Z W: r_0 = (4s' e^5 + e) / (e^5 + e), r_1 = (4s' + 1) / 2; column 1 <= 0 -> 0
    # Z' = [[r_0 + 4s', 2], [r_1 + 1, 0]]; mean over the 2 existing nodes: [(r_0 + 4s' + r_1 + 1)/2, 1]
    s1 = 1.0 / (1.0 + math.exp(-0.75))
    z0 = 4 * s1
    r0 = (z0 * math.exp(5) + E) / (math.exp(5) + E)
    r1 = (z0 + 1.0) / 2.0
    g0 = (r0 + z0 + r1 + 1.0) / 2.0
    assert_close(out, t([[g0 + 4.5, 1.0 - 2.5]]), **TOL)


@pytest.mark.parametrize("mode", ["literal", "mean"])
def test_mangonet_target_only_no_nan(mode):
    # every neighbour missing (zero padding). literal: w_0 = p_t = [1/2, 3/4] (empty product = 1)
    # -> target logits [5/4, 0] -> s'' = 1 / (1 + e^{-5/4}); z_0 = [4s'', 2]; S = [[1]]
    # Z'_0 = ReLU([4s'', -2]) + [4s'', 2] = [8s'', 2]; out = [8s'' + 4.5, 2 - 2.5]
    # mean: the empty mean gives w_0 = 0 -> uniform alpha -> z_0 = [2, 2] -> Z'_0 = [4, 2]
    phi, beta, y, _ = _hand_inputs()
    phi[0, 1:] = 0.0
    beta[0, 1:] = 0.0
    y[0, 1:] = 0.0
    mask = torch.tensor([[True, False, False]])
    out = _hand_model(target_mode=mode)(phi, beta, y, mask)
    assert not torch.isnan(out).any()
    z0 = 4.0 / (1.0 + math.exp(-1.25)) if mode == "literal" else 2.0
    assert_close(out, t([[2 * z0 + 4.5, -0.5]]), **TOL)


# --------------------------------------------------------------------------------------------
# Invariants on random inputs
# --------------------------------------------------------------------------------------------


def _random_case(b=2, m=3, c=3, d=4, p=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(b, m + 1, d, p, generator=g, dtype=F64) * 2
    beta = (torch.randn(b, m + 1, c, p, generator=g, dtype=F64) * 3).softmax(-1)
    y = torch.randn(b, m + 1, c, generator=g, dtype=F64) * 3
    mask = torch.ones(b, m + 1, dtype=torch.bool)
    mask[1, 2] = False  # sample 1 lacks neighbour 2
    torch.manual_seed(seed)
    model = MangoNet(MangoNetConfig(dim=d, num_labels=c, hidden=5)).double()
    with torch.no_grad():
        model.psi.weight.mul_(3)  # a non-flat adjacency
    return model, phi, beta, y, mask


@pytest.mark.parametrize("mode", ["literal", "mean"])
def test_mangonet_invariant_to_neighbour_order(mode):
    model, phi, beta, y, mask = _random_case()
    model.coatten = CoAttentionConfig(target=mode)
    out = model(phi, beta, y, mask)
    assert out.shape == (2, 3)  # (B, C)
    assert torch.isfinite(out).all()
    perm = [0, 3, 1, 2]  # target stays node 0, neighbours rotate
    out_perm = model(phi[:, perm], beta[:, perm], y[:, perm], mask[:, perm])
    assert_close(out_perm, out, **TOL)


def test_mangonet_depends_on_neighbour_phi_but_not_on_missing_ones():
    model, phi, beta, y, mask = _random_case()
    out = model(phi, beta, y, mask)
    changed = phi.clone()
    changed[:, 1] += 1.0  # a present neighbour in both samples
    diff = (model(changed, beta, y, mask) - out).abs()
    assert (diff.amax(dim=-1) > 1e-3).all()
    junk_phi, junk_beta, junk_y = phi.clone(), beta.clone(), y.clone()
    junk_phi[1, 2], junk_beta[1, 2], junk_y[1, 2] = 1e3, 5.0, -40.0  # sample 1's missing neighbour
    assert_close(model(junk_phi, junk_beta, junk_y, mask), out, **TOL)


def test_coattention_shared_maps_equal_the_per_node_form():
    """W weightings of one node's maps (the node store) give eq. 5 as if the maps were copied W times."""
    from pipeline.models.mangonet import coattention, coattention_shared

    g = torch.Generator().manual_seed(0)
    w, maps = torch.rand(2, 5, 3, generator=g), torch.rand(2, 3, 7, generator=g)
    for t in (1.0, 0.1):
        torch.testing.assert_close(coattention_shared(w, maps, t), coattention(w, maps.unsqueeze(1).expand(-1, 5, -1, -1), t))
