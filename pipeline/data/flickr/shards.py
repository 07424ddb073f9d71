"""The crawl's output folder: crash-safe Parquet shards and the journal of the shard being filled.

Resumability: the Parquet shards `part-NNNNN.parquet` are the truth. Each shard is written under
a temporary name, fsynced and renamed, so a file with a final name is always complete. Every
finished photo is also appended (and fsynced) to a small journal, `.journal-NNNNN.jsonl`, until
its shard is written; on start, leftover temporary shards are removed, photos found in shards are
skipped, and journal records of photos not yet in a shard are written into a shard without
fetching them again. So a crawl killed with SIGKILL and started again loses no finished photo,
writes none twice, and re-fetches only the photos whose calls were in flight.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import MangoError
from pipeline.io import atomic_path
from pipeline.schemas import CRAWL_SCHEMA

log = logging.getLogger(__name__)

SHARD_GLOB = "part-*.parquet"
_SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")
_JOURNAL_RE = re.compile(r"^\.journal-(\d{5,})\.jsonl$")
_TMP_GLOB = ".part-*.tmp-*"  # what atomic_path leaves of a shard whose write was killed
_LOCK_NAME = ".crawl.lock"


def records_frame(records: Sequence[dict[str, Any]]) -> pl.DataFrame:
    return pl.from_dicts(list(records), schema=CRAWL_SCHEMA) if records else pl.DataFrame(schema=CRAWL_SCHEMA)


class ShardStore:
    """The crawl's output folder: complete shards, the journal of the shard being filled.

    Opening it recovers from any interruption: temporary shards are removed, ids of complete
    shards are the done set, and journal records of photos not in a shard become a shard.
    """

    def __init__(self, out: Path, shard_size: int) -> None:
        self.out, self.shard_size = out, shard_size
        self.recovered = 0
        for tmp in out.glob(_TMP_GLOB):
            log.info("removing the unfinished shard %s", tmp.name)
            tmp.unlink()
        self.done: set[str] = set()
        seqs = [-1]
        for shard in sorted(out.glob(SHARD_GLOB)):
            m = _SHARD_RE.match(shard.name)
            if not m:
                continue
            seqs.append(int(m.group(1)))
            try:
                ids = pl.read_parquet(shard, columns=["photo_id"])["photo_id"].to_list()
            except Exception as exc:
                raise MangoError(f"{shard}: not a readable crawl shard ({exc}); move it away and re-run") from exc
            again = self.done.intersection(ids)
            if again:
                raise MangoError(f"{shard}: photo ids already in another shard (e.g. {sorted(again)[0]}); "
                                 "the folder mixes two crawls")
            self.done.update(ids)
        journals = sorted(p for p in out.iterdir() if _JOURNAL_RE.match(p.name))
        seqs += [int(_JOURNAL_RE.match(p.name).group(1)) for p in journals]
        self.next_seq = max(seqs) + 1
        self._buffer: list[dict[str, Any]] = []
        self._journal: Any = None
        pending = [r for r in self._read_journals(journals) if r["photo_id"] not in self.done]
        if pending:
            self.recovered = len(pending)
            log.info("recovered %d finished photos from the journal", len(pending))
            for r in pending:
                self.done.add(r["photo_id"])
            self._buffer = pending
            self._write_shard()
        for j in journals:  # all their records are in shards now
            j.unlink()

    @staticmethod
    def _read_journals(journals: Sequence[Path]) -> list[dict[str, Any]]:
        """Complete lines of the journals (a line cut by a kill has no newline and is dropped)."""
        records: dict[str, dict[str, Any]] = {}
        for j in journals:
            for line in j.read_text(encoding="utf-8").splitlines(keepends=True):
                if not line.endswith("\n"):
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and set(rec) == set(CRAWL_SCHEMA):
                    records.setdefault(rec["photo_id"], rec)
        return list(records.values())

    def add(self, record: dict[str, Any]) -> None:
        """Journal one finished photo (durable before returning); write a shard when full."""
        if record["photo_id"] in self.done:
            raise AssertionError(f"photo {record['photo_id']} finished twice")
        if self._journal is None:
            self._journal = open(self.out / f".journal-{self.next_seq:05d}.jsonl", "a", encoding="utf-8")
        self._journal.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self.done.add(record["photo_id"])
        self._buffer.append(record)
        if len(self._buffer) >= self.shard_size:
            self._write_shard()

    def flush(self) -> None:
        """Write the partly filled shard, if any (end of crawl or orderly stop)."""
        if self._buffer:
            self._write_shard()

    def _write_shard(self) -> None:
        name = f"part-{self.next_seq:05d}.parquet"
        with atomic_path(self.out / name, fsync=True) as tmp:
            records_frame(self._buffer).write_parquet(tmp)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        (self.out / f".journal-{self.next_seq:05d}.jsonl").unlink(missing_ok=True)
        log.debug("wrote %s (%d photos)", name, len(self._buffer))
        self._buffer = []
        self.next_seq += 1

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


@contextlib.contextmanager
def crawl_lock(out: Path) -> Iterator[None]:
    """One crawl per output folder at a time (the lock dies with the process, even on SIGKILL)."""
    fh = open(out / _LOCK_NAME, "a")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise MangoError(f"{out}: another crawl is writing to this folder") from exc
        yield
        (out / _LOCK_NAME).unlink(missing_ok=True)  # a finished crawl leaves only its shards
    finally:
        fh.close()


def read_crawl(out: str | os.PathLike) -> pl.DataFrame:
    """The crawl's dataset (all complete shards), sorted by photo id."""
    shards = sorted(Path(out).glob(SHARD_GLOB))
    if not shards:
        raise MangoError(f"{out}: no crawl shards ({SHARD_GLOB}); run `mango crawl` first")
    return pl.concat([pl.read_parquet(s) for s in shards]).sort("photo_id")


