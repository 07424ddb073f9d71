"""The paper's published numbers: Tables 1-6 of Zhang et al., "Mind Your Neighbours: Image Annotation
with Metadata Neighbourhood Graph Co-Attention Networks" (CVPR 2019), transcribed by hand.

Source: the paper's text as extracted from its PDF (CVPR 2019 open-access version). Tables 1/2/3 are the
comparisons on NUS-WIDE / MIRFlickr / MS-COCO, Tables 4/5/6 the ablations (m = 3) on the same datasets.
The extraction scrambled the table layout; it was resolved as follows.

* Meta+Logistic's six threshold metrics and KNN's dashes come out labelled ("CP 0.679 - CR 0.393 - ...").
* mAPC/mAPO come out as 22 numbers after "mAPC mAPO": 11 (row, in Method order) pairs whose two numbers
  are printed in either order. Each pair is read as mAPC = the smaller, mAPO = the larger:
  - NUS-WIDE: given (per-label mAP is the lower one on NUS-WIDE for every row).
  - MS-COCO: the text says SRN's MS-COCO numbers are "from the original model"; SRN's paper reports
    per-label mAP 77.1, so SRN's pair (0.839, 0.771) has mAPC = 0.771 < mAPO; the SRN row's threshold
    metrics also match SRN's published top-3 numbers exactly (CP .852 CR .588 CF1 .674 OP .874 OR .625
    OF1 .729), which corroborates the column assignment below.
  - MIRFlickr: NOT settled by the text. Every claim in it (MangoNet best on mAPC/mAPO/OF1; full model best
    in the ablation) holds under either reading. mAPC < mAPO is assumed by analogy with the other two
    datasets (per-label mAP below pooled mAP); the smaller numbers also rank-correlate better with the
    per-label CF1 (Spearman 0.87 vs 0.72 over the nine vision rows), as on NUS-WIDE (0.76 vs 0.67). If
    the reading were the other way, every MIRFlickr mAPC/mAPO here would be swapped.
* The remaining 54 numbers of each comparison table are six 9-row columns (Multi-CNN .. MangoNet-m15).
  Each column was named by the cross-check that its 7th entry (MangoNet-m3) equals the ablation table's
  "MangoNet" row (m = 3); the six m3 values are distinct, so the assignment is unique. Column order found:
  NUS-WIDE and MIRFlickr: OF1, CF1, CP, CR, OP, OR; MS-COCO: OF1, CP, CR, OP, OR, CF1.
  Checks: OF1 = 2*OP*OR/(OP+OR) holds within 0.0011 on every row (only the chosen OF1 column, with OP/OR
  in either role, passes it), so OP/OR/OF1 are doubly confirmed. CF1 is NOT the harmonic mean of CP and
  CR: it lies 0.010-0.057 below it on every row, i.e. the paper's CF1 is the mean of per-label F1s.
* The ablation tables (4-6) print their threshold columns labelled; only their mAPC/mAPO pairs are in
  scrambled order, resolved with the same smaller = mAPC rule (the "MangoNet" row then equals MangoNet-m3).

Values are fractions in [0, 1] as printed (three decimals); None stands for the paper's "-".
"""

from __future__ import annotations

Row = dict[str, float | None]

_DASH: Row = {"CP": None, "CR": None, "CF1": None, "OP": None, "OR": None, "OF1": None}


def _row(mapc: float, mapo: float, cp: float, cr: float, cf1: float, op: float, or_: float, of1: float) -> Row:
    return {"mAPC": mapc, "mAPO": mapo, "CP": cp, "CR": cr, "CF1": cf1, "OP": op, "OR": or_, "OF1": of1}


PUBLISHED: dict[str, dict[str, Row]] = {
    "nuswide": {  # Table 1, then Table 4 (ablations, m = 3)
        "Meta+Logistic":   _row(0.527, 0.667, 0.679, 0.393, 0.475, 0.768, 0.450, 0.567),
        "KNN":             {"mAPC": 0.462, "mAPO": 0.669, **_DASH},
        "Multi-CNN":       _row(0.580, 0.789, 0.693, 0.408, 0.490, 0.810, 0.565, 0.666),
        "CNN Voting":      _row(0.599, 0.799, 0.674, 0.423, 0.497, 0.795, 0.597, 0.682),
        "TagProp":         _row(0.541, 0.742, 0.674, 0.408, 0.496, 0.784, 0.572, 0.661),
        "Link-CRF":        _row(0.542, 0.770, 0.698, 0.347, 0.437, 0.805, 0.548, 0.652),
        "SRN":             _row(0.600, 0.806, 0.704, 0.415, 0.496, 0.811, 0.587, 0.682),
        "NCNN":            _row(0.598, 0.803, 0.725, 0.390, 0.478, 0.800, 0.598, 0.685),
        "MangoNet-m3":     _row(0.617, 0.806, 0.715, 0.419, 0.507, 0.802, 0.599, 0.686),
        "MangoNet-m7":     _row(0.626, 0.808, 0.720, 0.415, 0.505, 0.804, 0.599, 0.687),
        "MangoNet-m15":    _row(0.628, 0.808, 0.739, 0.410, 0.501, 0.806, 0.599, 0.687),
        "NGCN":            _row(0.612, 0.807, 0.727, 0.381, 0.470, 0.808, 0.595, 0.685),
        "MangoNet w/o GF": _row(0.499, 0.691, 0.656, 0.328, 0.412, 0.739, 0.492, 0.591),
        "InsAtten":        _row(0.579, 0.801, 0.700, 0.383, 0.468, 0.822, 0.562, 0.668),
    },
    "mirflickr": {  # Table 2, then Table 5 (ablations, m = 3); mAPC/mAPO order assumed, see above
        "Meta+Logistic":   _row(0.571, 0.719, 0.771, 0.334, 0.429, 0.767, 0.494, 0.601),
        "KNN":             {"mAPC": 0.745, "mAPO": 0.839, **_DASH},
        "Multi-CNN":       _row(0.816, 0.915, 0.889, 0.638, 0.696, 0.857, 0.800, 0.827),
        "CNN Voting":      _row(0.825, 0.916, 0.902, 0.630, 0.685, 0.860, 0.798, 0.828),
        "TagProp":         _row(0.818, 0.856, 0.776, 0.625, 0.657, 0.864, 0.594, 0.704),
        "Link-CRF":        _row(0.800, 0.902, 0.883, 0.601, 0.671, 0.853, 0.766, 0.807),
        "SRN":             _row(0.831, 0.925, 0.839, 0.711, 0.760, 0.853, 0.827, 0.840),
        "NCNN":            _row(0.840, 0.918, 0.840, 0.724, 0.765, 0.849, 0.826, 0.837),
        "MangoNet-m3":     _row(0.849, 0.924, 0.870, 0.713, 0.769, 0.865, 0.822, 0.843),
        "MangoNet-m7":     _row(0.852, 0.924, 0.866, 0.718, 0.772, 0.865, 0.826, 0.845),
        "MangoNet-m15":    _row(0.851, 0.925, 0.881, 0.705, 0.761, 0.867, 0.823, 0.844),
        "NGCN":            _row(0.843, 0.923, 0.885, 0.667, 0.731, 0.866, 0.813, 0.838),
        "MangoNet w/o GF": _row(0.768, 0.876, 0.807, 0.613, 0.679, 0.821, 0.737, 0.777),
        "InsAtten":        _row(0.820, 0.916, 0.884, 0.665, 0.723, 0.857, 0.806, 0.831),
    },
    "coco": {  # Table 3, then Table 6 (ablations, m = 3)
        "Meta+Logistic":   _row(0.703, 0.779, 0.851, 0.556, 0.643, 0.882, 0.575, 0.696),
        "KNN":             {"mAPC": 0.699, "mAPO": 0.766, **_DASH},
        "Multi-CNN":       _row(0.738, 0.812, 0.827, 0.563, 0.646, 0.848, 0.601, 0.703),
        "CNN Voting":      _row(0.750, 0.818, 0.816, 0.558, 0.635, 0.839, 0.582, 0.687),
        "TagProp":         _row(0.720, 0.814, 0.815, 0.570, 0.641, 0.832, 0.607, 0.703),
        "Link-CRF":        _row(0.718, 0.787, 0.823, 0.548, 0.642, 0.831, 0.594, 0.693),
        "SRN":             _row(0.771, 0.839, 0.852, 0.588, 0.674, 0.874, 0.625, 0.729),
        "NCNN":            _row(0.760, 0.833, 0.838, 0.579, 0.669, 0.871, 0.608, 0.716),
        "MangoNet-m3":     _row(0.775, 0.843, 0.871, 0.579, 0.676, 0.895, 0.619, 0.732),
        "MangoNet-m7":     _row(0.778, 0.845, 0.881, 0.577, 0.676, 0.902, 0.618, 0.733),
        "MangoNet-m15":    _row(0.779, 0.846, 0.876, 0.584, 0.680, 0.898, 0.622, 0.735),
        "NGCN":            _row(0.765, 0.834, 0.842, 0.568, 0.663, 0.880, 0.610, 0.721),
        "MangoNet w/o GF": _row(0.692, 0.774, 0.811, 0.504, 0.599, 0.854, 0.547, 0.667),
        "InsAtten":        _row(0.741, 0.816, 0.831, 0.565, 0.649, 0.851, 0.603, 0.706),
    },
}

# (comparison table, ablation table) numbers in the paper, per dataset.
TABLES: dict[str, tuple[int, int]] = {"nuswide": (1, 4), "mirflickr": (2, 5), "coco": (3, 6)}
