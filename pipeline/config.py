"""Typed, validated parameters: one dataclass per `params.yaml` section, loaded by `load_params`.

A bad value fails with its key and the allowed values or range, never deep inside a stage.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import MangoError
from pipeline.schemas import METRIC_KEYS

DATASETS = ("mirflickr", "nuswide", "coco")
SPLIT_MODES = ("official", "random")
MIRFLICKR_LABEL_SETS = ("potential", "relevant", "all")
DEVICES = ("auto", "cpu", "cuda")
NEIGHBOUR_METHODS = ("jaccard", "semantic")


def is_weights_member(weights: str) -> bool:
    """`backbone.weights` names a torchvision weights enum member such as IMAGENET1K_V1 (upper case), not a path."""
    return re.fullmatch(r"[A-Z][A-Z0-9_]*", weights) is not None


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise MangoError(f"params: {key} {msg}")


@dataclass(frozen=True)
class CoAttentionConfig:
    """How eq. 4-8 turn InsAtten's outputs into co-attention maps (`mangonet.*` params).

    The paper taken literally is weights="prob", maps="beta", temperature=1, target="literal":
    measured on the defaults, that alpha is uniform to four decimals (a softmax over a w-weighted
    sum of maps that each sum to 1, with w <= 1; and eq. 7's product of m + 1 probabilities
    vanishes), so the variants below live beside it.

    weights      "prob": w from sigma(y) (a soft label overlap in [0, 1]); "logit": from y itself
    maps         "beta": softmax-normalised beta (eq. 5 literal); "scores": InsAtten's pre-softmax
                 scores x of eq. 1, so eq. 5's softmax normalises once (log beta = x minus a
                 per-map constant, which no softmax over positions can see); "beta_p": beta * P
    temperature  alpha = softmax(logits / temperature)
    learn_temperature  the temperature is a learnt parameter (initialised at `temperature`)
    target       eq. 7: "literal" product over the m neighbours, "geomean" (its m-th root), "mean"
    """

    weights: str = "prob"
    maps: str = "beta"
    temperature: float = 1.0
    learn_temperature: bool = False
    target: str = "literal"


WEIGHTS = ("prob", "logit")
MAPS = ("beta", "scores", "beta_p")
TARGETS = ("literal", "geomean", "mean")


@dataclass
class SyntheticParams:
    """The embedded default world, written in the MIRFlickr-25k layout (see pipeline/data/synthetic/write.py)."""

    seed: int = 0
    n_images: int = 2400
    image_size: int = 128
    n_topics: int = 48
    hard_fraction: float = 0.35  # share of images whose content is ambiguous on its own

    def __post_init__(self) -> None:
        _check(self.n_images >= 20, "synthetic.n_images", f"must be >= 20, got {self.n_images}")
        _check(self.image_size >= 32, "synthetic.image_size", f"must be >= 32, got {self.image_size}")
        _check(self.n_topics >= 2, "synthetic.n_topics", f"must be >= 2, got {self.n_topics}")
        _check(0.0 <= self.hard_fraction <= 1.0, "synthetic.hard_fraction", f"must be in [0, 1], got {self.hard_fraction}")


@dataclass
class DatasetParams:
    """Which distribution `prepare` reads, and how it is split into train and test."""

    name: str = "mirflickr"  # mirflickr | nuswide | coco (pipeline/data/datasets/<name>.py)
    root: str = "data/raw/synthetic"
    labels: str = "potential"  # mirflickr: potential | relevant | all
    tags: str = "raw"  # mirflickr: raw (meta/tags_raw) | clean (meta/tags)
    groups: str = ""  # nuswide: a `mango crawl` Parquet dataset whose group titles join the metadata; "" = none
    split: str = "official"  # official (nuswide, coco: the distribution's lists; mirflickr has none) | random
    test_fraction: float = 0.5  # random split only
    split_seed: int = 0
    val_fraction: float = 0.25  # share of train carved out (seeded by split_seed) as the validation split
    score_on: str = "test"  # test | val: val drops the test images and scores the validation split in their place

    def __post_init__(self) -> None:
        _check(self.name in DATASETS, "dataset.name", f"must be one of {', '.join(DATASETS)}, got '{self.name}'")
        _check(self.labels in MIRFLICKR_LABEL_SETS, "dataset.labels",
               f"must be one of {', '.join(MIRFLICKR_LABEL_SETS)}, got '{self.labels}'")
        _check(self.tags in ("raw", "clean"), "dataset.tags", f"must be raw or clean, got '{self.tags}'")
        _check(self.split in SPLIT_MODES, "dataset.split", f"must be one of {', '.join(SPLIT_MODES)}, got '{self.split}'")
        if self.name != "mirflickr":  # options that only MIRFlickr reads must not be set, or be silently ignored
            _check(self.labels == "potential", "dataset.labels",
                   f"applies to mirflickr only ({self.name} has one label set); leave it at potential, got '{self.labels}'")
            _check(self.tags == "raw", "dataset.tags",
                   f"applies to mirflickr only ({self.name} has one tag source); leave it at raw, got '{self.tags}'")
        _check(not self.groups or self.name == "nuswide", "dataset.groups",
               f"is read for nuswide only; leave it empty for {self.name}, got '{self.groups}'")
        _check(0.0 < self.test_fraction < 1.0, "dataset.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        _check(0.0 < self.val_fraction < 1.0, "dataset.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        _check(self.score_on in ("test", "val"), "dataset.score_on", f"must be test or val, got '{self.score_on}'")


@dataclass
class LemmatiseParams:
    vocab_size: int = 500  # keep the |T| most frequent terms

    def __post_init__(self) -> None:
        _check(self.vocab_size >= 1, "lemmatise.vocab_size", f"must be >= 1, got {self.vocab_size}")


@dataclass
class NeighboursParams:
    k_max: int = 15  # neighbours are searched once for k_max; training reads the first m
    block_size: int = 2048
    method: str = "jaccard"  # jaccard (tags; paper: MIRFlickr, NUS-WIDE) | semantic (captions; paper: MS-COCO)
    partition: str = "none"  # jaccard only: none | a list column of metadata.parquet, e.g. groups (hierarchy search)
    attributes: int = 256  # semantic only: the most common visual attributes kept (paper: 256)
    word2vec: str = ""  # semantic only: pretrained word2vec file (binary or text); "" = train on the captions

    def __post_init__(self) -> None:
        _check(self.k_max >= 1, "neighbours.k_max", f"must be >= 1, got {self.k_max}")
        _check(self.block_size >= 1, "neighbours.block_size", f"must be >= 1, got {self.block_size}")
        _check(self.method in NEIGHBOUR_METHODS, "neighbours.method",
               f"must be one of {', '.join(NEIGHBOUR_METHODS)}, got '{self.method}'")
        _check(self.partition == "none" or re.fullmatch(r"\S+", self.partition) is not None,
               "neighbours.partition", f"must be none or a column name of metadata.parquet such as groups, got '{self.partition}'")
        _check(self.partition not in ("image_id", "split", "terms"), "neighbours.partition",
               f"must be none or a group column, not the core column '{self.partition}'")
        _check(self.partition == "none" or self.method == "jaccard", "neighbours.partition",
               f"applies to method jaccard only (hierarchy search); set it to none for method {self.method}")
        _check(self.attributes >= 1, "neighbours.attributes", f"must be >= 1, got {self.attributes}")
        if self.method == "semantic" and self.word2vec:
            _check(Path(self.word2vec).is_file(), "neighbours.word2vec",
                   f"must be empty (train word2vec on the captions) or an existing word2vec file, got '{self.word2vec}'")


@dataclass
class BackboneParams:
    """Any torchvision classification model with a convolutional trunk (pipeline/models/backbone.py).

    The name is checked against torchvision's registry where the model is built (finetune), so
    that loading params does not import torchvision."""

    arch: str = "mobilenet_v2"
    weights: str = "imagenet"  # none | imagenet (the model's default torchvision weights) | IMAGENET1K_V1 (a member) | <checkpoint>
    input_size: int = 112
    output_stride: int = 16  # 0 = the model's own (32 for most); 16 or 8 dilate the last stage(s) instead
    node: str = ""  # graph node whose output is phi; "" = the map that global pooling reads

    def __post_init__(self) -> None:
        _check(bool(re.fullmatch(r"[a-z0-9_]+", self.arch)), "backbone.arch",
               f"must be a torchvision model name such as mobilenet_v2 or resnet101, got '{self.arch}'")
        _check(self.input_size >= 32, "backbone.input_size", f"must be >= 32, got {self.input_size}")
        _check(self.output_stride in (0, 8, 16), "backbone.output_stride",
               f"must be 0 (the model's own), 16 or 8, got {self.output_stride}")
        if self.weights not in ("none", "imagenet") and not is_weights_member(self.weights):
            _check(Path(self.weights).is_file(), "backbone.weights",
                   f"must be none, imagenet, a weights name such as IMAGENET1K_V1 or an existing checkpoint file, "
                   f"got '{self.weights}'")
        if self.weights != "none" and not Path(self.weights).is_file():
            _check(self.arch != "resnet10", "backbone.weights",
                   "torchvision has no ImageNet weights for resnet10; use e.g. resnet18 or mobilenet_v2")


@dataclass
class TrainParams:
    """Optimiser settings shared by every trainer (SGD with momentum, BCE)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "constant"  # constant (the paper) | cosine (decay to 0 over the run)

    def validate(self, section: str) -> None:
        _check(self.schedule in ("constant", "cosine"), f"{section}.schedule",
               f"must be constant or cosine, got '{self.schedule}'")
        _check(self.epochs >= 1, f"{section}.epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"{section}.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"{section}.lr", f"must be > 0, got {self.lr}")
        _check(0 <= self.momentum < 1, f"{section}.momentum", f"must be in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, f"{section}.weight_decay", f"must be >= 0, got {self.weight_decay}")


@dataclass
class FinetuneParams(TrainParams):
    num_workers: int = 0  # DataLoader workers decoding images (finetune is one of the two stages that decode)
    train_blocks: int = -1  # trunk blocks trained, counted from the top (-1: all; 0: head only, trunk frozen)

    def validate(self, section: str) -> None:
        super().validate(section)
        _check(self.num_workers >= 0, f"{section}.num_workers", f"must be >= 0, got {self.num_workers}")
        _check(self.train_blocks >= -1, f"{section}.train_blocks", f"must be -1 (all), 0 (head only) or more, got {self.train_blocks}")


@dataclass
class FeaturesParams:
    batch_size: int = 128
    num_workers: int = 0

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "features.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.num_workers >= 0, "features.num_workers", f"must be >= 0, got {self.num_workers}")


@dataclass
class InsAttenParams(TrainParams):
    hidden: int = 512  # q(.): conv widths 512 / 512 / C (eq. 1)

    def validate(self, section: str) -> None:
        super().validate(section)
        _check(self.hidden >= 1, f"{section}.hidden", f"must be >= 1, got {self.hidden}")


@dataclass
class MangoNetParams(TrainParams):
    hidden: int = 512  # psi: FC with hidden state size 512 (eq. 10)
    coatten_pool: int = 1  # max-pool factor for attention maps before co-attention (paper: 14x14 -> 7x7 is 2)
    # Co-attention (eq. 4-8; CoAttentionConfig above). The paper literally:
    # weights prob, maps beta, temperature 1, learn_temperature false, target_weights literal.
    weights: str = "prob"  # w from prob (sigma(y)) | logit (y)
    maps: str = "beta"  # beta | scores (InsAtten's pre-softmax x: eq. 5's softmax normalises once) | beta_p (beta * P)
    temperature: float = 1.0  # alpha = softmax(. / temperature)
    learn_temperature: bool = False
    target_weights: str = "literal"  # eq. 7: literal product over the neighbours | geomean | mean

    def coattention(self) -> CoAttentionConfig:
        return CoAttentionConfig(self.weights, self.maps, self.temperature, self.learn_temperature, self.target_weights)

    def validate(self, section: str) -> None:
        super().validate(section)
        _check(self.hidden >= 1, f"{section}.hidden", f"must be >= 1, got {self.hidden}")


@dataclass
class EvaluateParams:
    top_k: int = 3
    threshold: float = 0.5

    def __post_init__(self) -> None:
        _check(self.top_k >= 1, "evaluate.top_k", f"must be >= 1, got {self.top_k}")
        _check(0.0 < self.threshold < 1.0, "evaluate.threshold", f"must be in (0, 1), got {self.threshold}")


@dataclass
class GateParams:
    """The CI metric gate (`mango metrics-diff`): fail when a method's metric drops by more."""

    tolerance: float = 0.01  # the floor of every allowed drop
    sigmas: float = 3.0  # allowed drop of a method's metric: max(tolerance, sigmas x its seed std)
    spread: str = "reports/seed_spread.json"  # the measured seed spread (make seeds); "" = the floor alone
    metrics: list = field(default_factory=lambda: ["mAPC", "OF1"])

    def __post_init__(self) -> None:
        _check(self.tolerance >= 0, "gate.tolerance", f"must be >= 0, got {self.tolerance}")
        _check(self.sigmas >= 0, "gate.sigmas", f"must be >= 0, got {self.sigmas}")
        bad = [m for m in self.metrics if m not in METRIC_KEYS]
        _check(not bad, "gate.metrics", f"must be among {', '.join(METRIC_KEYS)}, got {bad}")


@dataclass
class Params:
    seed: int = 0
    m: int = 3
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | auto (bf16 autocast where the device has native bf16); params.yaml: auto
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    dataset: DatasetParams = field(default_factory=DatasetParams)
    lemmatise: LemmatiseParams = field(default_factory=LemmatiseParams)
    neighbours: NeighboursParams = field(default_factory=NeighboursParams)
    backbone: BackboneParams = field(default_factory=BackboneParams)
    finetune: FinetuneParams = field(default_factory=FinetuneParams)
    features: FeaturesParams = field(default_factory=FeaturesParams)
    insatten: InsAttenParams = field(default_factory=InsAttenParams)
    mangonet: MangoNetParams = field(default_factory=MangoNetParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    gate: GateParams = field(default_factory=GateParams)
    methods: dict = field(default_factory=dict)  # per-method sections, validated by each method (method_params)

    def __post_init__(self) -> None:
        _check(self.device in DEVICES, "device", f"must be one of {', '.join(DEVICES)}, got '{self.device}'")
        _check(self.precision in ("auto", "fp32", "bf16"), "precision",
               f"must be one of auto, fp32, bf16, got '{self.precision}'")
        _check(1 <= self.m <= self.neighbours.k_max, "m",
               f"must be between 1 and neighbours.k_max ({self.neighbours.k_max}), got {self.m}")
        for name in ("finetune", "insatten", "mangonet"):
            getattr(self, name).validate(name)
        _check(self.mangonet.coatten_pool >= 1, "mangonet.coatten_pool", f"must be >= 1, got {self.mangonet.coatten_pool}")
        for key, allowed in (("weights", ("prob", "logit")), ("maps", ("beta", "scores", "beta_p")),
                             ("target_weights", ("literal", "geomean", "mean"))):
            value = getattr(self.mangonet, key)
            _check(value in allowed, f"mangonet.{key}", f"must be one of {', '.join(allowed)}, got '{value}'")
        _check(self.mangonet.temperature > 0, "mangonet.temperature", f"must be > 0, got {self.mangonet.temperature}")


def _build(cls: type, data: Any, key: str) -> Any:
    """Build dataclass `cls` from a mapping, recursing into nested dataclass fields."""
    if not isinstance(data, dict):
        raise MangoError(f"params: {key or 'file'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"section '{key}'" if key else "the top level"
        raise MangoError(f"params: unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        sub = f"{key}.{name}" if key else name
        ftype = fields[name].type
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else fields[name].default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, sub)
            continue
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise MangoError(f"params: {sub} must be {expected.__name__} (as in '{ftype}'), got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def method_params(params: Params, name: str, cls: type) -> Any:
    """The `methods.<name>` section of params.yaml as dataclass `cls` (defaults where absent)."""
    return _build(cls, params.methods.get(name) or {}, f"methods.{name}")


# What each member of the MangoNet family sets for itself in `methods.<name>` (chosen on validation);
# everything else (architecture, co-attention, batch, momentum, schedule) is the shared `mangonet` section.
FAMILY_KEYS = ("lr", "epochs")


def family_params(params: Params, name: str) -> MangoNetParams:
    """The training settings of MangoNet-family member `name`: the `mangonet` section with the
    member's own `methods.<name>` lr and epochs over it."""
    own = params.methods.get(name) or {}
    if not isinstance(own, dict):
        raise MangoError(f"params: methods.{name} must be a mapping, got {type(own).__name__}")
    extra = sorted(set(own) - set(FAMILY_KEYS))
    if extra:
        raise MangoError(f"params: methods.{name}: unknown key(s) {', '.join(extra)}; a MangoNet-family member sets "
                         f"only {', '.join(FAMILY_KEYS)} (the rest is the shared mangonet section)")
    base = dataclasses.asdict(params.mangonet)
    out = _build(MangoNetParams, {**base, **own}, f"methods.{name}")
    out.validate(f"methods.{name}")
    return out


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Load and validate `params.yaml`; missing keys take the defaults above."""
    p = Path(path)
    if not p.exists():
        raise MangoError(f"{p}: params file not found (run from the project root, or pass --params)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MangoError(f"{p}: not valid YAML ({exc})") from exc
    try:
        return _build(Params, data, "")
    except MangoError as exc:
        raise MangoError(f"{p}: {exc}") from None
