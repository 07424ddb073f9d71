"""Flickr metadata crawl: photo ids -> resumable Parquet shards of tags, sets/pools, title, text.

Used only where a dataset ships without metadata of its own (e.g. the NUS-WIDE groups). For every
photo id two Flickr REST methods are called through `flickrapi` (`client`). The crawl is built to
run for days against a rate-limited API and to survive being killed at any moment; each module
of the package describes its part:

- Politeness (`ratelimit`): one global pacing limiter spaces every HTTP call, retries included,
  across all worker threads.
- Robustness (`client`): transient failures (timeouts, resets, HTTP errors, answers cut off or
  not JSON, Flickr 105/106) are retried with backoff within a bounded number of attempts per
  photo, then recorded (`error`, or `partial` when only getAllContexts never answered); a
  missing photo is recorded (`not_found`), never fatal; errors that concern every photo
  (invalid key, bad signature) stop the crawl with a MangoError.
- Resumability (`shards`): complete Parquet shards plus an fsynced journal, so a crawl killed
  with SIGKILL and started again loses no finished photo, writes none twice, and re-fetches only
  the photos whose calls were in flight.
- Second chances (`retry_errors`, `mango crawl --retry-errors`): a later run re-fetches the
  photos recorded as `error` or `partial` (never `not_found`) and replaces their rows in place,
  through the same journal, so the folder keeps one row per photo id even if the run is killed.
- Secrets (`redact`): the API key and secret come from the environment only and are scrubbed
  from every recorded error message and every log record emitted while the crawl runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.flickr.client import RETRY_STATUSES, Credentials, PhotoFetcher
from pipeline.data.flickr.ratelimit import RateLimiter
from pipeline.data.flickr.redact import redact_logs
from pipeline.data.flickr.settings import CrawlConfig
from pipeline.data.flickr.shards import SHARD_GLOB, ShardStore, crawl_lock

log = logging.getLogger(__name__)


@dataclass
class CrawlSummary:
    """What one run did (the folder may hold more from earlier runs)."""

    requested: int = 0
    already_done: int = 0
    recovered_from_journal: int = 0
    fetched: int = 0
    ok: int = 0
    not_found: int = 0
    error: int = 0
    partial: int = 0
    retried: int = 0  # of the fetched: photos that had an error/partial row (`retry_errors`)
    calls: int = 0
    retries: int = 0
    shards: int = 0
    seconds: float = 0.0


def crawl(ids: Sequence[str], out: str | os.PathLike, credentials: Credentials, rest_url: str,
          config: CrawlConfig | None = None, progress: bool = True, seed: int | None = None,
          retry_errors: bool = False) -> CrawlSummary:
    """Fetch metadata for every id not yet in `out`; resumable (see `pipeline.data.flickr.shards`).

    With `retry_errors`, the ids whose row is `error` or `partial` are fetched again too, their
    new records replacing the old rows. `ids` must be distinct. Returns counts for this run; the
    folder's shards hold one row per photo finished by this run or an earlier one.
    """
    from pipeline.progress import progress as progress_bar

    config = config or CrawlConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = CrawlSummary(requested=len(ids))
    with redact_logs(credentials.secrets), crawl_lock(out):
        store = ShardStore(out, config.shard_size)
        summary.recovered_from_journal = store.recovered
        retry = {i for i in ids if store.status.get(i) in RETRY_STATUSES} if retry_errors else set()
        todo = [i for i in ids if i not in store.done or i in retry]
        summary.already_done = len(ids) - len(todo)
        if summary.already_done or retry:
            log.info("%d of %d photos already crawled in %s; fetching %d (%d of them again)", summary.already_done,
                     len(ids), out, len(todo), len(retry))
        if todo:
            hours = 2 * len(todo) / config.max_calls_per_hour
            log.info("crawling %d photos at <= %g calls/hour (2 per photo): at least %s", len(todo),
                     config.max_calls_per_hour, f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min")
        stop = threading.Event()
        fetcher = PhotoFetcher(credentials, rest_url, config, RateLimiter(config.max_calls_per_hour), stop, seed)
        bar = progress_bar(total=len(ids), initial=summary.already_done, desc="crawl", unit="photo", disable=not progress,
                           dynamic_ncols=True, smoothing=0.05)
        pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="crawl")
        pending: set[Future] = set()
        queue = iter(todo)
        try:
            def refill() -> None:
                while len(pending) < 2 * config.workers:
                    photo_id = next(queue, None)
                    if photo_id is None:
                        return
                    pending.add(pool.submit(fetcher.fetch, photo_id))

            refill()
            while pending:
                finished, still = wait(pending, return_when=FIRST_COMPLETED)
                pending.clear()
                pending.update(still)
                for fut in finished:
                    record = fut.result()  # a fatal error or a bug propagates from here
                    store.add(record)
                    summary.fetched += 1
                    summary.retried += record["photo_id"] in retry
                    summary.calls += record["attempts"]
                    setattr(summary, record["status"], getattr(summary, record["status"]) + 1)
                    bar.set_postfix(ok=summary.ok, not_found=summary.not_found, error=summary.error,
                                    partial=summary.partial, refresh=False)
                    bar.update(1)
                refill()
            store.flush()
        except BaseException:
            stop.set()
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(Exception):  # keep what finished; the journal has it anyway
                store.flush()
            raise
        finally:
            pool.shutdown(wait=True)
            store.close()
            bar.close()
    summary.retries = fetcher.retries
    summary.shards = len(list(out.glob(SHARD_GLOB)))
    summary.seconds = time.perf_counter() - start
    log.info("crawl: %d fetched (%d ok, %d not found, %d errors, %d partial; %d re-fetched from error/partial), "
             "%d calls, %d retries, %d shards in %s", summary.fetched, summary.ok, summary.not_found, summary.error,
             summary.partial, summary.retried, summary.calls, summary.retries, summary.shards, out)
    left = sum(store.status.get(i) in RETRY_STATUSES for i in ids)
    if left:
        log.warning("%d of the %d photos are recorded as error or partial; once Flickr answers again, run the same "
                    "command with --retry-errors to fetch them again", left, len(ids))
    return summary
