"""Atomic writes and small Parquet/JSON helpers shared by every stage.

Every output is written to a temporary sibling and renamed into place on success, so an
interrupted stage never leaves a file or folder that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import MangoError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    With `directory=True` the temporary path is an (empty) folder and the whole folder is
    swapped in at the end. On error the temporary path is removed and `path` is left untouched;
    temporary paths of `path` left by a process killed mid-write (SIGKILL) are removed first.
    With `fsync=True` the written content (every file of a folder) is flushed to disk before the
    rename and the parent folder after it, so the new name survives a power cut complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):  # left by a write killed with -9
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod((0o777 if directory else 0o666) & ~umask)  # mkdtemp/mkstemp create private paths
    try:
        yield tmp
        if fsync:
            for p in sorted(tmp.rglob("*")) if directory else []:
                _fsync(p)
            _fsync(tmp)
        if directory:
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(tmp, target)
        else:
            os.replace(tmp, target)
        if fsync:
            _fsync(target.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(df: pl.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.exists():
        raise MangoError(f"{p}: file not found (run the stage that writes it first)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise MangoError(f"{p}: not valid JSON ({exc})") from exc


def read_parquet(path: str | os.PathLike, columns: dict[str, type[pl.DataType] | pl.DataType] | None = None) -> pl.DataFrame:
    """Read a Parquet file, checking that `columns` (name -> dtype class) are present.

    Raises MangoError naming the file and the missing or mistyped column.
    """
    p = Path(path)
    if not p.exists():
        raise MangoError(f"{p}: file not found")
    try:
        df = pl.read_parquet(p)
    except Exception as exc:  # polars raises several types for non-Parquet input
        raise MangoError(f"{p}: not a readable Parquet file ({exc})") from exc
    for name, dtype in (columns or {}).items():
        if name not in df.columns:
            raise MangoError(f"{p}: missing column '{name}' (columns present: {', '.join(df.columns)})")
        actual = df.schema[name]
        if dtype is not None and actual != dtype:
            raise MangoError(f"{p}: column '{name}' has type {actual}, expected {dtype}")
    return df
