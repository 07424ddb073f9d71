"""The trained workspace `mango annotate` runs: the files the pipeline wrote, found where dvc.yaml
puts them (each path is read from the stage command that writes or reads it, never written again
here), and checked before any photo is touched."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import MangoError
from pipeline.schemas import METADATA_FILE, VOCAB_FILE


def _options(cmd: str, item: str | None = None) -> dict[str, str]:
    """`--name value` pairs of a stage command (with `${item.method}` resolved)."""
    words = shlex.split(cmd.replace("${item.method}", item or ""))
    return {w[2:]: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--") and not words[i + 1].startswith("--")}


@dataclass(frozen=True)
class Workspace:
    """Paths of a trained workspace (relative to its root)."""

    root: Path
    params: Path
    prepared: Path
    interim: Path
    features: Path
    attention: Path
    backbone: Path
    insatten: Path
    model: Path
    method: str = "mangonet"

    @classmethod
    def from_dvc_yaml(cls, root: str | Path = ".", method: str = "mangonet") -> Workspace:
        """The workspace of the DAG in `root/dvc.yaml`: features/attention/checkpoints as its stages name them."""
        root = Path(root)
        path = root / "dvc.yaml"
        if not path.is_file():
            raise MangoError(f"{path}: not found; run `mango annotate` in the pipeline's folder (or pass --workspace)")
        try:
            stages = yaml.safe_load(path.read_text())["stages"]
            train = _options(stages["train"]["cmd"], method)
            features = _options(stages["features"]["cmd"])
            insatten = _options(stages["insatten"]["cmd"])
            lemmatise = _options(stages["lemmatise"]["cmd"])
            return cls(root=root, params=root / "params.yaml", prepared=root / train["prepared"],
                       interim=root / lemmatise["out"], features=root / train["features"],
                       attention=root / train["attention"], backbone=root / features["checkpoint"],
                       insatten=root / insatten["checkpoint"], model=root / train["checkpoint"], method=method)
        except (KeyError, TypeError, yaml.YAMLError) as exc:
            raise MangoError(f"{path}: not the pipeline's dvc.yaml (annotate reads the --features, --attention, "
                             f"--checkpoint and --out options of its train, features, insatten and lemmatise stages; "
                             f"missing {exc})") from exc

    @property
    def metadata(self) -> Path:
        return self.interim / METADATA_FILE

    @property
    def vocab(self) -> Path:
        return self.interim / VOCAB_FILE

    def check(self) -> None:
        """MangoError naming every output the pipeline has not written yet."""
        needed = {"params": self.params, "metadata": self.metadata, "vocabulary": self.vocab,
                  "feature store": self.features / "meta.json", "attention store": self.attention / "y.npy",
                  "backbone checkpoint": self.backbone, "InsAtten checkpoint": self.insatten,
                  f"{self.method} checkpoint": self.model}
        missing = [f"{what} ({path})" for what, path in needed.items() if not path.exists()]
        if missing:
            raise MangoError(f"the workspace {self.root.resolve()} is not trained yet: missing {'; '.join(missing)}. "
                             "Run `make repro` (or `dvc repro`) there first")
