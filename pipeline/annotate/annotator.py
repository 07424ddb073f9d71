"""Annotate new photos with the trained pipeline, exactly as the pipeline scores its test split.

For a batch of photos (image_id, path, raw tags):
1. the tags go through the pipeline's own text path (`pipeline.text.lemmatise.raw_terms`: tokenise,
   stop words, WordNet lemmas) and keep the terms of the workspace's vocabulary;
2. each image goes through the trained backbone with the pipeline's transform (`image_features`:
   the feature store's fp16 maps, pooled vector, Multi-CNN scores), then the trained InsAtten
   (beta and y, fp32, stored fp16 as in the attention store);
3. its m metadata neighbours are the exact Jaccard top-m among every image the pipeline indexed
   (both splits) and the other photos of the batch; never the image itself (nor an indexed copy
   of it under the same id);
4. MangoNet (the trained checkpoint, its m) scores it on the prediction path of its trainer
   (`predict_graph`: eq. 4-9 in fp32, rounded to fp16 when the trainer read the node store, then
   the learnt graph head).
A photo whose tags leave no vocabulary term has no neighbours: MangoNet sees a graph of one node,
the image itself (its co-attention over its own maps, the GCN over one node, its global feature),
as for any indexed image with fewer than m neighbours. Photos that cannot be read are skipped.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

from pipeline.annotate.workspace import Workspace
from pipeline.errors import MangoError
from pipeline.progress import progress
from pipeline.schemas import ANNOTATE_INPUT_SCHEMA, METADATA_SCHEMA, VOCAB_SCHEMA

log = logging.getLogger(__name__)


class Stacked:
    """Rows of an indexed (memory-mapped) array followed by the new batch's rows, without copying
    the indexed array: what `gather` needs (`shape`, sorted integer-array indexing)."""

    def __init__(self, indexed: np.ndarray, new: np.ndarray) -> None:
        self.indexed, self.new = indexed, new
        self.shape = (indexed.shape[0] + new.shape[0], *indexed.shape[1:])
        self.dtype = indexed.dtype

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        n = self.indexed.shape[0]
        old, new = rows[rows < n], rows[rows >= n] - n
        parts = [np.asarray(self.indexed[old]), np.asarray(self.new[new], dtype=self.dtype)]
        out = np.concatenate(parts) if len(old) and len(new) else parts[0] if len(old) else parts[1]
        order = np.argsort(np.concatenate([np.flatnonzero(rows < n), np.flatnonzero(rows >= n)]), kind="stable")
        return out[order]


@dataclass
class Skipped:
    image_id: str
    row: int
    reason: str


@dataclass
class AnnotateResult:
    table: pl.DataFrame  # image_id, labels, one score column per label, neighbours
    skipped: list[Skipped] = field(default_factory=list)
    without_terms: int = 0

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for s in self.skipped:
            kind = s.reason.split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        return (f"{self.table.height} annotated, {len(self.skipped)} skipped{f' ({detail})' if detail else ''}, "
                f"{self.without_terms} without a known term (annotated with no neighbours)")


def read_photos(path: Path) -> pl.DataFrame:
    """NEW.parquet: image_id (string), path (string), tags (list of strings); MangoError naming the
    file and the column otherwise."""
    from pipeline.io import read_parquet

    return read_parquet(path, ANNOTATE_INPUT_SCHEMA).select(list(ANNOTATE_INPUT_SCHEMA))


def unreadable(path: str) -> str | None:
    """Why the image at `path` cannot be used (a decode of the whole image), or None."""
    p = Path(path)
    if not p.is_file():
        return f"missing: {path} does not exist"
    try:
        with Image.open(p) as im:
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable: {path} is not a readable image ({exc.__class__.__name__}: {exc})"
    return None


def check_photos(photos: pl.DataFrame, source: str) -> tuple[pl.DataFrame, list[Skipped]]:
    """The usable rows (paths resolved against the working directory) and the skipped ones, each
    with its reason: a duplicate id (the first row is kept), no path, a missing or unreadable file."""
    keep, skipped, first = [], [], {}
    for row, (image_id, path) in enumerate(zip(photos["image_id"].to_list(), photos["path"].to_list())):
        if image_id is None:
            skipped.append(Skipped("", row, f"no id: row {row} of {source} has a null image_id"))
            continue
        if image_id in first:
            skipped.append(Skipped(image_id, row, f"duplicate: image_id '{image_id}' in row {row} is also row {first[image_id]}"))
            continue
        first[image_id] = row
        why = "no path: the path is null" if path is None else unreadable(path)
        if why:
            skipped.append(Skipped(image_id, row, why))
            continue
        keep.append(row)
    good = photos.with_row_index("_row").filter(pl.col("_row").is_in(keep)).drop("_row").with_columns(pl.col("path").map_elements(lambda p: str(Path(p).resolve()), return_dtype=pl.String),
                                     pl.col("tags").fill_null([]))
    return good, skipped


def photo_terms(photos: pl.DataFrame, vocabulary: pl.Series) -> list[list[str]]:
    """Each photo's vocabulary terms from its raw tags, by the pipeline's own text path."""
    from pipeline.text.lemmatise import known_terms, raw_terms

    raw = photos.select("image_id", pl.lit("tag").alias("field"), pl.col("tags").alias("text")).explode("text").drop_nulls("text")
    terms, _ = raw_terms(raw)
    per_image = dict(zip(*known_terms(terms, vocabulary).select("image_id", "terms").to_dict(as_series=False).values()))
    return [per_image.get(i, []) for i in photos["image_id"].to_list()]


def search_neighbours(indexed: pl.DataFrame, photos: pl.DataFrame, terms: list[list[str]], m: int) -> np.ndarray:
    """(B, m) rows of each photo's neighbours in [indexed rows, then the batch] (-1 = none): exact
    Jaccard among every indexed image and the other photos, never itself or an indexed image of
    the same id."""
    from pipeline.neighbours.common import membership_matrix
    from pipeline.neighbours.jaccard import jaccard_topk_blocked

    n = indexed.height
    # an indexed copy of a photo (same id) is the photo itself: no terms here, so nobody's candidate
    pool = indexed.select(pl.when(pl.col("image_id").is_in(photos["image_id"].implode())).then(pl.lit([], pl.List(pl.String)))
                          .otherwise(pl.col("terms")).alias("terms"))
    everything = pl.concat([pool, pl.DataFrame({"terms": terms}, schema={"terms": pl.List(pl.String)})])
    idx, _ = jaccard_topk_blocked(membership_matrix(everything["terms"]), m, start=n)
    return idx


def _load(model: torch.nn.Module, ckpt: dict, path: Path) -> None:
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as exc:
        raise MangoError(f"{path}: does not fit the workspace's stores ({str(exc).splitlines()[0]}); "
                         "re-run the pipeline (`dvc repro`)") from exc


@torch.no_grad()
def photo_features(ws: Workspace, paths: list[str], labels: list[str], batch_size: int,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """maps (B, D, H, W) fp16, pooled (B, D) fp16, beta (B, C, H, W) fp16, y (B, C) fp32 of the photos,
    through the trained backbone and InsAtten (the features and insatten stages' code)."""
    from pipeline.config import BackboneParams, InsAttenParams
    from pipeline.features.extract import image_features
    from pipeline.features.images import ImageDataset, image_loader
    from pipeline.models.backbone import backbone_from_params
    from pipeline.models.insatten import InsAtten
    from pipeline.training.loop import forward_batches, load_checkpoint

    ckpt = load_checkpoint(ws.backbone)
    if ckpt.get("labels") != labels:
        raise MangoError(f"{ws.backbone}: trained on labels {ckpt.get('labels')}, the feature store has {labels}; "
                         "re-run the pipeline (`dvc repro`)")
    trained = BackboneParams(**ckpt["config"]["backbone"])
    backbone = backbone_from_params(trained, len(labels), weights="none")
    _load(backbone, ckpt, ws.backbone)
    backbone.to(device).eval()
    if device.type == "cuda":
        backbone = backbone.to(memory_format=torch.channels_last)  # as the features stage runs it
    loader = image_loader(ImageDataset(paths, trained.input_size), batch_size, shuffle=False, num_workers=0, device=device)
    maps, pooled = [], []
    for (x,) in progress(loader, desc="annotate: features", unit="batch"):
        phi, g, _ = image_features(backbone, x, device)
        maps.append(phi), pooled.append(g)
    maps_a, pooled_a = np.concatenate(maps), np.concatenate(pooled)
    ia = load_checkpoint(ws.insatten)
    cfg = InsAttenParams(**ia["config"])
    insatten = InsAtten(maps_a.shape[1], len(labels), cfg.hidden)
    _load(insatten, ia, ws.insatten)
    h, w = maps_a.shape[2:]
    batches = [maps_a[s:s + 256] for s in range(0, len(maps_a), 256)]
    inputs = ((torch.from_numpy(b.astype(np.float32)),) for b in batches)
    ys, betas = [], []
    for yb, bb in forward_batches(insatten, inputs, device, len(batches), "annotate: attention", exact=True):
        ys.append(yb.float().cpu().numpy())
        betas.append(bb.float().reshape(len(yb), len(labels), h, w).cpu().numpy().astype(np.float16))
    return maps_a, pooled_a, np.concatenate(betas), np.concatenate(ys)


def annotate(photos: pl.DataFrame, ws: Workspace, *, top_k: int = 3, threshold: float = 0.5, source: str = "input",
             neighbours: dict[str, list[str]] | None = None) -> AnnotateResult:
    """Annotate `photos` (ANNOTATE_INPUT_SCHEMA) with the trained workspace `ws`.

    `neighbours` (image_id -> neighbour ids, indexed or in the batch) replaces the search: the
    test that this is the pipeline's own path passes the neighbour lists the pipeline used.
    """
    from pipeline.config import load_params
    from pipeline.device import resolve_device
    from pipeline.evaluation.metrics import topk_predictions
    from pipeline.features.store import AttentionStore, FeatureStore
    from pipeline.io import read_parquet
    from pipeline.methods import Context, create_model
    from pipeline.methods.mangonet import predict_graph
    from pipeline.training.loop import load_checkpoint

    ws.check()
    p = load_params(ws.params)
    device = resolve_device(p.device, p.precision)
    store, attention = FeatureStore.open(ws.features), AttentionStore.open(ws.attention)
    labels = store.labels
    indexed = read_parquet(ws.metadata, METADATA_SCHEMA)
    if indexed["image_id"].to_list() != store.index["image_id"].to_list():
        raise MangoError(f"{ws.features}: the feature store does not match {ws.metadata}; re-run the pipeline (`dvc repro`)")
    good, skipped = check_photos(photos, source)
    for s in skipped:
        log.warning("annotate: skipped %s", s.reason)
    columns = {"image_id": pl.String, "labels": pl.List(pl.String), **{name: pl.Float32 for name in labels},
               "neighbours": pl.List(pl.String)}
    if good.height == 0:
        log.warning("annotate: no photo left to annotate (%d in %s, %d skipped)", photos.height, source, len(skipped))
        return AnnotateResult(pl.DataFrame(schema=columns), skipped)
    ckpt = load_checkpoint(ws.model)
    m = int(ckpt["config"]["m"])
    shared = {k: v for k, v in dataclasses.asdict(p.mangonet).items() if k in ckpt["config"] and k not in ("lr", "epochs")}
    changed = {k: (ckpt["config"][k], v) for k, v in shared.items() if ckpt["config"][k] != v}
    if changed:  # the model is rebuilt from params (its co-attention holds no learnt parameter to load)
        raise MangoError(f"{ws.model} was trained with other mangonet settings than params.yaml now has "
                         f"({', '.join(f'{k}: {a} -> {b}' for k, (a, b) in changed.items())}); re-run the pipeline (`dvc repro`)")
    clash = {"image_id", "labels", "neighbours"} & set(labels)
    if clash:
        raise MangoError(f"a label is named {', '.join(sorted(clash))}: the output's own columns; rename it in the dataset")
    if m != p.m:
        log.warning("annotate: %s was trained with m = %d, params.yaml says m = %d: using the trained m = %d "
                    "(re-run the pipeline to train at the new m)", ws.model, m, p.m, m)
    terms = photo_terms(good, read_parquet(ws.vocab, VOCAB_SCHEMA)["term"])
    n, b = store.meta["n"], good.height
    ids = indexed["image_id"].to_list() + good["image_id"].to_list()
    if neighbours is None:
        nb_new = search_neighbours(indexed, good, terms, m)  # (B, m)
    else:
        row_of = {image_id: i for i, image_id in enumerate(indexed["image_id"].to_list())}
        row_of.update({image_id: n + i for i, image_id in enumerate(good["image_id"].to_list())})
        nb_new = np.full((b, m), -1, dtype=np.int64)
        for i, image_id in enumerate(good["image_id"].to_list()):
            given = [row_of[j] for j in neighbours.get(image_id, [])][:m]
            nb_new[i, :len(given)] = given
    maps, pooled, beta, y = photo_features(ws, good["path"].to_list(), labels, p.features.batch_size, device)
    stacked = FeatureStore(root=store.root, maps=Stacked(store.maps, maps), pooled=Stacked(store.pooled, pooled),
                           index=store.index, meta={**store.meta, "n": n + b})
    all_neighbours = np.full((n + b, m), -1, dtype=np.int64)
    all_neighbours[n:] = nb_new
    ctx = Context(store=stacked, attention=AttentionStore(beta=Stacked(attention.beta, beta), y=np.concatenate([attention.y, y])),
                  neighbours=all_neighbours, targets=np.zeros((n + b, len(labels)), dtype=np.uint8), params=p,
                  device=device, m=m)
    model = create_model(ws.method, ctx, ckpt)
    rows = np.arange(n, n + b)
    # as the stage predicted its test split: node features rounded to fp16 when it read the node store
    fp16_nodes = ckpt["config"].get("node_features") == "node store" and model.nodes == "coatten"
    scores = predict_graph(ctx, model, rows, m, int(ckpt["config"]["coatten_pool"]), desc="annotate: MangoNet",
                           fp16_nodes=fp16_nodes)
    chosen = topk_predictions(scores, top_k, threshold)  # (B, C) bool
    order = np.argsort(-scores, axis=1, kind="stable")
    table = pl.DataFrame({
        "image_id": good["image_id"],
        "labels": [[labels[j] for j in order[i] if chosen[i, j]] for i in range(b)],
        **{name: scores[:, j].astype(np.float32) for j, name in enumerate(labels)},
        "neighbours": [[ids[j] for j in row if j >= 0] for row in nb_new],
    }, schema=columns)
    return AnnotateResult(table, skipped, without_terms=sum(1 for t in terms if not t))
