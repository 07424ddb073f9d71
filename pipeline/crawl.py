"""Flickr metadata crawl: photo ids -> resumable Parquet shards of tags, sets/pools, title, text.

Used only where a dataset ships without metadata of its own (e.g. the NUS-WIDE groups). For every
photo id two Flickr REST methods are called through `flickrapi`: `flickr.photos.getInfo` (title,
description, raw tags, owner, location) and `flickr.photos.getAllContexts` (titles of the sets
and group pools the photo is in). The crawl is built to run for days against a rate-limited API
and to survive being killed at any moment:

- Politeness: one global pacing limiter spaces every HTTP call (retries included) by
  3600 / max_calls_per_hour seconds across all worker threads (Flickr allows 3,600 calls per
  hour per key; the default stays under it).
- Robustness: timeouts, connection errors, HTTP 5xx / 429 and Flickr error 105 ("service
  unavailable") are retried with exponential backoff and jitter, a bounded number of times,
  after which the photo is recorded with status `error` and the error code. Flickr error 1
  ("photo not found") is final on the first answer: status `not_found`. A body that is not
  JSON is recorded (status `error`, code `malformed-json`), never fatal. Errors that concern
  every photo (invalid key, bad signature) stop the crawl with a MangoError.
- Resumability: the Parquet shards `part-NNNNN.parquet` are the truth. Each shard is written
  under a temporary name, fsynced and renamed, so a file with a final name is always complete.
  Every finished photo is also appended (and fsynced) to a small journal,
  `.journal-NNNNN.jsonl`, until its shard is written; on start, leftover temporary shards are
  removed, photos found in shards are skipped, and journal records of photos not yet in a shard
  are written into a shard without fetching them again. So a crawl killed with SIGKILL and
  started again loses no finished photo, writes none twice, and re-fetches only the photos
  whose calls were in flight.
- Secrets: the API key and secret are read from the environment only, travel in the OAuth
  header, and are scrubbed from every recorded error message and every log record emitted
  while the crawl runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import MangoError

log = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://api.flickr.com/services/rest/"
ENV_API_KEY = "FLICKR_API_KEY"
ENV_API_SECRET = "FLICKR_API_SECRET"
ENV_REST_URL = "FLICKR_REST_URL"

STATUSES = ("ok", "not_found", "error")

# One row per photo id. Non-ok rows keep title..longitude null; error rows say why.
CRAWL_SCHEMA: dict[str, pl.DataType] = {
    "photo_id": pl.String(),
    "status": pl.String(),  # ok | not_found | error
    "title": pl.String(),
    "description": pl.String(),
    "tags": pl.List(pl.String()),  # raw tags, as the owner typed them, in Flickr's order
    "groups": pl.List(pl.String()),  # titles of the photo's sets, then of its group pools
    "owner": pl.String(),  # owner NSID
    "owner_name": pl.String(),
    "location": pl.String(),  # "locality, region, country" where geotagged
    "latitude": pl.Float64(),
    "longitude": pl.Float64(),
    "error_code": pl.String(),  # flickr-<code> | http-<status> | timeout | connection | malformed-json | ...
    "error_message": pl.String(),
    "attempts": pl.Int32(),  # HTTP calls spent on the photo in the run that finished it
}

# Flickr error codes.
PHOTO_NOT_FOUND = 1
RETRYABLE_FLICKR_CODES = frozenset({105, 106})  # service unavailable, write failed (temporary)
# Errors about the key, the signature or the request format: every photo would fail the same way.
FATAL_FLICKR_CODES = frozenset({95, 96, 97, 98, 100, 111, 112, 114, 115, 116})

SHARD_GLOB = "part-*.parquet"
_SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")
_JOURNAL_RE = re.compile(r"^\.journal-(\d{5,})\.jsonl$")
_TMP_PREFIX = ".part-"
_LOCK_NAME = ".crawl.lock"
_ID_RE = re.compile(r"^\d+$")


@dataclass(frozen=True)
class CrawlConfig:
    """Knobs of one crawl run. Defaults are polite to the real Flickr API."""

    max_calls_per_hour: float = 3000.0
    """Ceiling on HTTP calls (retries included) over all workers; Flickr allows 3,600 per key."""
    workers: int = 4
    """Threads issuing calls; the rate limit is shared, so more workers only hide latency."""
    timeout_s: float = 30.0
    """Per-request timeout; a slower answer counts as a (retryable) timeout."""
    max_attempts: int = 6
    """Attempts per API call, first one included, before the photo is recorded as an error."""
    backoff_base_s: float = 2.0
    """Delay before the first retry; doubles each retry (with jitter), capped by backoff_max_s."""
    backoff_max_s: float = 120.0
    shard_size: int = 250
    """Photos per Parquet shard; a journal covers the photos not yet in a shard."""

    def __post_init__(self) -> None:
        checks = [
            ("max_calls_per_hour", self.max_calls_per_hour > 0, "must be > 0"),
            ("workers", isinstance(self.workers, int) and 1 <= self.workers <= 64, "must be an integer in 1..64"),
            ("timeout_s", self.timeout_s > 0, "must be > 0"),
            ("max_attempts", isinstance(self.max_attempts, int) and self.max_attempts >= 1, "must be an integer >= 1"),
            ("backoff_base_s", self.backoff_base_s >= 0, "must be >= 0"),
            ("backoff_max_s", self.backoff_max_s >= self.backoff_base_s, "must be >= backoff_base_s"),
            ("shard_size", isinstance(self.shard_size, int) and self.shard_size >= 1, "must be an integer >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise MangoError(f"crawl option {name}={getattr(self, name)!r}: {rule}")


@dataclass(frozen=True)
class Credentials:
    """Flickr API key and secret. `repr` never shows them."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.api_key, self.api_secret)


def credentials_from_env(env: dict[str, str] | None = None) -> Credentials:
    """Read FLICKR_API_KEY and FLICKR_API_SECRET; a clear MangoError names whichever is missing."""
    env = dict(os.environ) if env is None else env
    missing = [name for name in (ENV_API_KEY, ENV_API_SECRET) if not env.get(name, "").strip()]
    if missing:
        raise MangoError(
            f"environment variable(s) {', '.join(missing)} not set: the crawl needs a Flickr API key and "
            f"secret (https://www.flickr.com/services/apps/create/), given only through {ENV_API_KEY} and "
            f"{ENV_API_SECRET}"
        )
    return Credentials(env[ENV_API_KEY].strip(), env[ENV_API_SECRET].strip())


def rest_url_from_env(env: dict[str, str] | None = None) -> str:
    """FLICKR_REST_URL if set (tests point it at a local fake server), else Flickr's endpoint."""
    env = dict(os.environ) if env is None else env
    url = env.get(ENV_REST_URL, "").strip() or DEFAULT_REST_URL
    if not url.startswith(("http://", "https://")):
        raise MangoError(f"{ENV_REST_URL}={url!r}: expected an http:// or https:// URL")
    return url


# ----------------------------------------------------------------------------------------------
# Input


@dataclass(frozen=True)
class PhotoIds:
    """The distinct ids of an ids file in first-seen order, and what was dropped on the way."""

    ids: list[str]
    duplicates: dict[str, int]  # id -> extra occurrences
    blank_lines: int


def read_photo_ids(path: str | os.PathLike) -> PhotoIds:
    """One Flickr photo id per line; blank lines and `#` comments are skipped.

    Duplicates are kept once (reported by the caller). Any other non-numeric line is a
    MangoError naming the file and line: Flickr photo ids are digits only, and a typo caught
    before the crawl costs nothing, while one recorded as an error row would cost a call.
    """
    p = Path(path)
    if not p.is_file():
        raise MangoError(f"{p}: ids file not found")
    seen: dict[str, None] = {}
    duplicates: dict[str, int] = {}
    blank = 0
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            value = line.strip()
            if not value or value.startswith("#"):
                blank += 1
                continue
            if not _ID_RE.match(value):
                raise MangoError(
                    f"{p}, line {lineno}: {value[:60]!r} is not a Flickr photo id (expected digits only, "
                    "one id per line)"
                )
            if value in seen:
                duplicates[value] = duplicates.get(value, 0) + 1
            else:
                seen[value] = None
    if not seen:
        raise MangoError(f"{p}: no photo ids (expected one numeric Flickr photo id per line)")
    return PhotoIds(list(seen), duplicates, blank)


# ----------------------------------------------------------------------------------------------
# Secrets


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every occurrence of each secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _RedactFilter(logging.Filter):
    """Rewrites a record's message with the secrets removed (third-party debug logs, e.g. the
    OAuth signing code, print the consumer key)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, scrub(text, self.secrets)
        return True


@contextlib.contextmanager
def redact_logs(secrets: Sequence[str]) -> Iterator[None]:
    """While the block runs, every handler of the root logger drops the secrets from records."""
    flt = _RedactFilter(secrets)
    handlers = list(logging.getLogger().handlers)
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


# ----------------------------------------------------------------------------------------------
# Politeness: rate limit and backoff


class RateLimiter:
    """Global pacing: call starts are at least 3600 / max_calls_per_hour seconds apart.

    Thread-safe; each caller reserves the next slot under a lock and sleeps outside it, so N
    calls take at least (N - 1) intervals whatever the number of threads.
    """

    def __init__(self, max_calls_per_hour: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 3600.0 / max_calls_per_hour
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


def backoff_delay(retry: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (1-based): base * 2**(retry-1), capped, with
    jitter in [50 %, 100 %] so that workers that failed together do not retry together."""
    ceiling = min(max_s, base_s * 2 ** (retry - 1))
    return ceiling * (0.5 + 0.5 * rng.random())


# ----------------------------------------------------------------------------------------------
# One photo


class HttpStatusError(Exception):
    """An HTTP answer other than 200 (raised before flickrapi parses or logs the body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class FatalCrawlError(MangoError):
    """An answer that means every call would fail (bad key, bad signature): stop the crawl."""


@dataclass
class _Failure:
    code: str
    message: str
    retryable: bool


def _raise_for_status(response: Any, *args: Any, **kwargs: Any) -> None:
    """requests response hook: turn any non-200 answer into HttpStatusError."""
    if response.status_code != 200:
        _ = response.content  # read the body so the connection goes back to the pool
        raise HttpStatusError(response.status_code, response.reason or "")


def make_flickr_api(credentials: Credentials, rest_url: str, timeout_s: float) -> Any:
    """A `flickrapi.FlickrAPI` answering in parsed JSON, pointed at `rest_url`.

    flickrapi sends every call to the instance's `REST_URL`, so the endpoint is set on the
    instance. Each instance gets its own requests session (flickrapi shares one class-wide
    session otherwise), with a hook that raises on non-200 answers, and no on-disk token cache
    (which would name a folder after the key).
    """
    import flickrapi
    import requests

    class _FlickrAPI(flickrapi.FlickrAPI):
        def __repr__(self) -> str:  # the stock repr prints the key, and flickrapi debug-logs it
            return "[FlickrAPI]"

        __str__ = __repr__

    api = _FlickrAPI(credentials.api_key, credentials.api_secret, format="parsed-json",
                     store_token=False, timeout=timeout_s)
    api.REST_URL = rest_url
    session = requests.Session()
    session.hooks["response"].append(_raise_for_status)
    api.flickr_oauth.session = session
    return api


def _classify(exc: BaseException, secrets: Sequence[str]) -> _Failure:
    """Map an exception from one API call to an error code and whether it is worth retrying."""
    import requests
    from flickrapi.exceptions import FlickrError

    message = scrub(str(exc), secrets)[:500]
    if isinstance(exc, FlickrError):
        code = exc.code
        if code is None:
            return _Failure("flickr", message, retryable=False)
        if code in FATAL_FLICKR_CODES:
            raise FatalCrawlError(f"Flickr refused the request ({message}); check {ENV_API_KEY}, "
                                  f"{ENV_API_SECRET} and {ENV_REST_URL}")
        return _Failure(f"flickr-{code}", message, retryable=code in RETRYABLE_FLICKR_CODES)
    if isinstance(exc, HttpStatusError):
        return _Failure(f"http-{exc.status}", message, retryable=exc.status >= 500 or exc.status == 429)
    if isinstance(exc, requests.Timeout):
        return _Failure("timeout", message, retryable=True)
    if isinstance(exc, requests.ConnectionError):
        return _Failure("connection", message, retryable=True)
    if isinstance(exc, ValueError):  # json.JSONDecodeError from flickrapi's parser
        return _Failure("malformed-json", message, retryable=False)
    raise exc


def _content(value: Any) -> str:
    """Flickr JSON wraps text as {"_content": ...}; some fields are plain strings."""
    if isinstance(value, dict):
        value = value.get("_content", "")
    return "" if value is None else str(value)


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_info(rsp: dict) -> dict[str, Any]:
    """Fields of a `flickr.photos.getInfo` answer (raises KeyError/TypeError if it has no photo)."""
    photo = rsp["photo"]
    owner = photo.get("owner") or {}
    tags = [_content(t.get("raw")) or _content(t) for t in (photo.get("tags") or {}).get("tag", [])]
    loc = photo.get("location") or None
    location = latitude = longitude = None
    if isinstance(loc, dict):
        parts = [_content(loc.get(k)) for k in ("locality", "region", "country")]
        location = ", ".join(p for p in parts if p) or None
        latitude, longitude = _float_or_none(loc.get("latitude")), _float_or_none(loc.get("longitude"))
    return {
        "title": _content(photo.get("title")),
        "description": _content(photo.get("description")),
        "tags": tags,
        "owner": owner.get("nsid"),
        "owner_name": owner.get("username"),
        "location": location,
        "latitude": latitude,
        "longitude": longitude,
    }


def parse_contexts(rsp: dict) -> list[str]:
    """Titles of the sets, then the pools, of a `flickr.photos.getAllContexts` answer."""
    if not isinstance(rsp, dict):
        raise TypeError("getAllContexts answer is not a JSON object")
    return [_content(c.get("title")) for key in ("set", "pool") for c in (rsp.get(key) or [])]


def empty_record(photo_id: str, status: str, attempts: int, code: str | None = None,
                 message: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CRAWL_SCHEMA)
    row.update(photo_id=photo_id, status=status, error_code=code, error_message=message, attempts=attempts)
    return row


class PhotoFetcher:
    """Fetches one photo's two answers with retries; one flickrapi client per worker thread."""

    def __init__(self, credentials: Credentials, rest_url: str, config: CrawlConfig, limiter: RateLimiter,
                 stop: threading.Event, seed: int | None = None) -> None:
        self.credentials, self.rest_url, self.config = credentials, rest_url, config
        self.limiter, self.stop = limiter, stop
        self._local = threading.local()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.retries = 0  # retries scheduled so far, all threads

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._local.api = make_flickr_api(self.credentials, self.rest_url, self.config.timeout_s)
        return api

    def _call(self, method: str, photo_id: str) -> tuple[dict | None, _Failure | None, int]:
        """(answer, None, calls) on success, (None, failure, calls) once retries are spent."""
        cfg = self.config
        for attempt in range(1, cfg.max_attempts + 1):
            if self.stop.is_set():
                raise _Stopped
            call = getattr(self._api().photos, method)  # build the client before taking a slot
            self.limiter.acquire()
            try:
                return call(photo_id=photo_id), None, attempt
            except Exception as exc:  # classified below; unknown exception types re-raise there
                failure = _classify(exc, self.credentials.secrets)
            if not failure.retryable or attempt == cfg.max_attempts:
                if failure.retryable:
                    failure.message = f"gave up after {attempt} attempts: {failure.message}"
                return None, failure, attempt
            with self._rng_lock:
                delay = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
                self.retries += 1
            log.debug("photo %s %s: %s, retry %d in %.2f s", photo_id, method, failure.code, attempt, delay)
            if self.stop.wait(delay):
                raise _Stopped
        raise AssertionError("unreachable")

    def fetch(self, photo_id: str) -> dict[str, Any]:
        """The photo's record (one row of CRAWL_SCHEMA)."""
        info, failure, calls = self._call("getInfo", photo_id)
        if failure is not None:
            status = "not_found" if failure.code == f"flickr-{PHOTO_NOT_FOUND}" else "error"
            return empty_record(photo_id, status, calls, failure.code, failure.message)
        try:
            fields = parse_info(info)
        except (KeyError, TypeError, AttributeError) as exc:
            return empty_record(photo_id, "error", calls, "malformed-response", f"getInfo: unexpected answer ({exc!r})")
        contexts, failure, more = self._call("getAllContexts", photo_id)
        calls += more
        if failure is not None:
            status = "not_found" if failure.code == f"flickr-{PHOTO_NOT_FOUND}" else "error"
            return empty_record(photo_id, status, calls, failure.code, f"getAllContexts: {failure.message}")
        try:
            groups = parse_contexts(contexts)
        except (KeyError, TypeError, AttributeError) as exc:
            return empty_record(photo_id, "error", calls, "malformed-response",
                                f"getAllContexts: unexpected answer ({exc!r})")
        return {**empty_record(photo_id, "ok", calls), **fields, "groups": groups}


class _Stopped(Exception):
    """A worker saw the stop flag (another worker hit a fatal error)."""


# ----------------------------------------------------------------------------------------------
# Output: shards + journal


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        for tmp in out.glob(f"{_TMP_PREFIX}*.tmp-*"):
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
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{self.next_seq:05d}.parquet.tmp-", dir=self.out)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            records_frame(self._buffer).write_parquet(tmp)
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)  # mkstemp creates private files
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.out / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.out)
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
def _exclusive(out: Path) -> Iterator[None]:
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


# ----------------------------------------------------------------------------------------------
# The crawl


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
    calls: int = 0
    retries: int = 0
    shards: int = 0
    seconds: float = 0.0


def crawl(ids: Sequence[str], out: str | os.PathLike, credentials: Credentials, rest_url: str,
          config: CrawlConfig | None = None, progress: bool = True, seed: int | None = None) -> CrawlSummary:
    """Fetch metadata for every id not yet in `out`; resumable (see the module docstring).

    `ids` must be distinct. Returns counts for this run; the folder's shards hold every photo
    finished by this run or an earlier one.
    """
    from pipeline.progress import progress as progress_bar

    config = config or CrawlConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = CrawlSummary(requested=len(ids))
    with redact_logs(credentials.secrets), _exclusive(out):
        store = ShardStore(out, config.shard_size)
        summary.recovered_from_journal = store.recovered
        todo = [i for i in ids if i not in store.done]
        summary.already_done = len(ids) - len(todo)
        if summary.already_done:
            log.info("%d of %d photos already crawled in %s; fetching %d", summary.already_done, len(ids), out,
                     len(todo))
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
                    summary.calls += record["attempts"]
                    setattr(summary, record["status"], getattr(summary, record["status"]) + 1)
                    bar.set_postfix(ok=summary.ok, not_found=summary.not_found, error=summary.error, refresh=False)
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
    log.info("crawl: %d fetched (%d ok, %d not found, %d errors), %d calls, %d retries, %d shards in %s",
             summary.fetched, summary.ok, summary.not_found, summary.error, summary.calls, summary.retries,
             summary.shards, out)
    return summary
