"""The crawl's output folder: crash-safe Parquet shards and the journal of the shard being filled.

Resumability: the Parquet shards `part-NNNNN.parquet` are the truth, one row per photo id over
all of them. Each shard is written under a temporary name, fsynced and renamed, so a file with a
final name is always complete. Every finished photo is also appended (and fsynced) to a small
journal, `.journal-NNNNN.jsonl`, until its row is in a shard; on start, leftover temporary shards
are removed, photos found in shards are skipped, and journal records not yet in a shard are
written into one without fetching them again. So a crawl killed with SIGKILL and started again
loses no finished photo, writes none twice, and re-fetches only the photos whose calls were in
flight.

Re-fetching (`mango crawl --retry-errors`): the new record of a photo that already has a row
(status error or partial) goes through the journal like a new photo's, and replaces the old row
*in its shard*: when the journal is committed, each shard holding a replaced photo is rewritten
(the same atomic write-and-rename) with the new rows in place of the old, after any new shard,
and the journal is deleted only once every shard it touches is rewritten. A journal record is
never older than a shard row (every start commits and deletes the journals before fetching, and
a run fetches a photo once), so recovery applies each journal record over the row of its id,
which makes it idempotent: a kill between two shard rewrites leaves every shard complete and each
id in exactly one of them, with the old row or the new one, and the next start finishes the
rewrites from the journal. Readers never see an id twice, whether they use `read_crawl` or
glob the folder (`polars.read_parquet("DIR/*.parquet")`, as the NUS-WIDE adapter does).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterator, KeysView, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.data.flickr.client import RETRY_STATUSES
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
    """The crawl's output folder: complete shards, the journal of the records not yet in one.

    Opening it recovers from any interruption: temporary shards are removed, the ids of complete
    shards are the done set, and the journal's records become rows: new ids a new shard, ids
    already in a shard replacements of their rows there.
    """

    def __init__(self, out: Path, shard_size: int) -> None:
        self.out, self.shard_size = out, shard_size
        self.recovered = 0
        for tmp in out.glob(_TMP_GLOB):
            log.info("removing the unfinished shard %s", tmp.name)
            tmp.unlink()
        self.status: dict[str, str] = {}  # photo id -> status of its latest record (shard or journal)
        self._shard_of: dict[str, str] = {}  # photo id -> name of the shard holding its row
        seqs = [-1]
        for shard in sorted(out.glob(SHARD_GLOB)):
            m = _SHARD_RE.match(shard.name)
            if not m:
                continue
            seqs.append(int(m.group(1)))
            try:
                rows = pl.read_parquet(shard, columns=["photo_id", "status"])
            except Exception as exc:
                raise MangoError(f"{shard}: not a readable crawl shard ({exc}); move it away and re-run") from exc
            again = self.status.keys() & set(rows["photo_id"])
            if again:
                raise MangoError(f"{shard}: photo ids already in another shard (e.g. {sorted(again)[0]}); "
                                 "the folder mixes two crawls")
            self.status.update(zip(rows["photo_id"], rows["status"]))
            self._shard_of.update(dict.fromkeys(rows["photo_id"], shard.name))
        journals = sorted(p for p in out.iterdir() if _JOURNAL_RE.match(p.name))
        seqs += [int(_JOURNAL_RE.match(p.name).group(1)) for p in journals]
        self.next_seq = max(seqs) + 1
        self._buffer: list[dict[str, Any]] = []  # records of photos without a row yet
        self._replacing: dict[str, dict[str, Any]] = {}  # photo id -> record replacing its row
        self._journal: Any = None
        self._this_run: set[str] = set()
        for r in self._read_journals(journals):
            if r["photo_id"] in self.status:
                self._replacing[r["photo_id"]] = r
            else:
                self._buffer.append(r)
            self.status[r["photo_id"]] = r["status"]
        if self._buffer or self._replacing:
            self.recovered = self._commit()
            if self.recovered:
                log.info("recovered %d finished photos from the journal", self.recovered)
        for j in journals:  # all their records are in shards now
            j.unlink()

    @property
    def done(self) -> KeysView[str]:
        """Ids with a record (in a shard, or journaled by this run)."""
        return self.status.keys()

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
        """Journal one finished photo (durable before returning); commit when a shard's worth is in.

        A photo that has a row already may be added only if that row is `error` or `partial`
        (`--retry-errors`), once per run; its record then replaces the row.
        """
        pid = record["photo_id"]
        if pid in self._this_run or (pid in self.status and self.status[pid] not in RETRY_STATUSES):
            raise AssertionError(f"photo {pid} finished twice")
        if self._journal is None:
            self._journal = open(self._journal_path(), "a", encoding="utf-8")
        self._journal.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        if pid in self.status:
            self._replacing[pid] = record
        else:
            self._buffer.append(record)
        self.status[pid] = record["status"]
        self._this_run.add(pid)
        if len(self._buffer) + len(self._replacing) >= self.shard_size:
            self._commit()

    def flush(self) -> None:
        """Commit what the journal holds, if anything (end of crawl or orderly stop)."""
        if self._buffer or self._replacing:
            self._commit()

    def _journal_path(self) -> Path:
        return self.out / f".journal-{self.next_seq:05d}.jsonl"

    def _commit(self) -> int:
        """New records into a new shard, replacements into their shards, then drop the journal.

        Returns how many records changed the dataset (a replacement already in place does not).
        """
        changed = len(self._buffer)
        if self._buffer:
            name = f"part-{self.next_seq:05d}.parquet"
            with atomic_path(self.out / name, fsync=True) as tmp:
                records_frame(self._buffer).write_parquet(tmp)
            self._shard_of.update(dict.fromkeys((r["photo_id"] for r in self._buffer), name))
            log.debug("wrote %s (%d photos)", name, len(self._buffer))
        by_shard: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for pid, record in self._replacing.items():
            by_shard[self._shard_of[pid]][pid] = record
        for name, records in sorted(by_shard.items()):
            changed += self._rewrite(self.out / name, records)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._journal_path().unlink(missing_ok=True)
        if self._buffer:
            self.next_seq += 1
        self._buffer, self._replacing = [], {}
        return changed

    @staticmethod
    def _rewrite(shard: Path, records: dict[str, dict[str, Any]]) -> int:
        """Replace the rows of `records`' ids in `shard` (atomically; not at all if already there)."""
        old = pl.read_parquet(shard)
        rows = old.to_dicts()
        new = records_frame([records.get(r["photo_id"], r) for r in rows])
        changed = sum(records.get(r["photo_id"], r) != r for r in rows)
        if changed:
            with atomic_path(shard, fsync=True) as tmp:
                new.write_parquet(tmp)
            log.debug("rewrote %s (%d rows replaced)", shard.name, changed)
        return changed

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
    """The crawl's dataset (all complete shards): one row per photo id, sorted by photo id.

    Records still only in a journal (a crawl killed before committing them) are not part of it
    until the next `mango crawl` on the folder commits them.
    """
    shards = sorted(Path(out).glob(SHARD_GLOB))
    if not shards:
        raise MangoError(f"{out}: no crawl shards ({SHARD_GLOB}); run `mango crawl` first")
    df = pl.concat([pl.read_parquet(s) for s in shards]).sort("photo_id")
    if df["photo_id"].n_unique() != df.height:
        twice = df.filter(pl.col("photo_id").is_duplicated())["photo_id"][0]
        raise MangoError(f"{out}: photo id {twice} is in more than one shard; the folder mixes two crawls")
    return df


