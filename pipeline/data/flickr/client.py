"""One photo through the Flickr REST API: credentials, the `flickrapi` client, retries and the
classification of failures, and the parsing of the two answers into a record.

For every photo id two Flickr REST methods are called: `flickr.photos.getInfo` (title,
description, raw tags, owner, location) and `flickr.photos.getAllContexts` (titles of the sets
and group pools the photo is in). One *attempt* asks both; the photo has `max_attempts` of them.

What a failed call means (error_code in brackets):

- Retried, with exponential backoff and jitter, within the photo's attempt budget: timeouts
  (`timeout`); connections refused, dropped or reset, also in the middle of a body
  (`connection`); any HTTP status other than 200 (`http-<status>`: 5xx, 429, ...); a status-200
  answer that is not a JSON object with `stat` ok or fail: a body cut off mid-JSON, an HTML
  error page, an empty body, bytes that are not UTF-8 (`malformed-json`); a JSON answer without
  the fields the parser needs (`malformed-response`); Flickr errors 105 "service unavailable"
  and 106 "write operation failed" (`flickr-105`, `flickr-106`).
- Final, on the first answer: Flickr error 1 "photo not found" (status `not_found`), and any
  other well-formed Flickr error answer, `{"stat": "fail", "code": N}` (`flickr-N`, status
  `error`).
- Fatal: the codes of FATAL_FLICKR_CODES (invalid key, bad signature, unknown method or format)
  concern every photo; they stop the crawl with a MangoError.

A retry repeats the whole photo (both calls), so a record never mixes answers of two attempts.
Once the budget is spent (or a final error came), the photo's status is `partial` if getInfo
succeeded in some attempt but getAllContexts never did (getInfo's fields kept, `groups` null,
error_code/error_message naming the getAllContexts failure), else `error`. `mango crawl
--retry-errors` re-fetches both kinds on a later run.
"""

from __future__ import annotations

import builtins
import http.client
import json
import logging
import os
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.data.flickr.ratelimit import RateLimiter, backoff_delay
from pipeline.data.flickr.settings import CrawlConfig
from pipeline.data.flickr.redact import scrub
from pipeline.errors import MangoError
from pipeline.schemas import CRAWL_SCHEMA

log = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://api.flickr.com/services/rest/"
ENV_API_KEY = "FLICKR_API_KEY"
ENV_API_SECRET = "FLICKR_API_SECRET"
ENV_REST_URL = "FLICKR_REST_URL"

# Of a record (CRAWL_SCHEMA row): ok (both answers), not_found (Flickr error 1), error (no usable
# getInfo answer), partial (getInfo's fields, but no getAllContexts answer: groups null).
STATUSES = ("ok", "not_found", "error", "partial")
RETRY_STATUSES = frozenset({"error", "partial"})  # what `--retry-errors` re-fetches

# Flickr error codes.
PHOTO_NOT_FOUND = 1
RETRYABLE_FLICKR_CODES = frozenset({105, 106})  # service unavailable, write failed (temporary)
# Any other code is final for the photo (status error), unless fatal:
# Errors about the key, the signature or the request format: every photo would fail the same way.
FATAL_FLICKR_CODES = frozenset({95, 96, 97, 98, 100, 111, 112, 114, 115, 116})


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


class HttpStatusError(Exception):
    """An HTTP answer other than 200 (raised before flickrapi parses or logs the body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


class FatalCrawlError(MangoError):
    """An answer that means every call would fail (bad key, bad signature): stop the crawl."""


RETRY, FINAL, NOT_FOUND = "retry", "final", "not_found"  # what a failed call means for the photo


class _Failure(Exception):
    """One failed call: its error code, a scrubbed message, RETRY / FINAL / NOT_FOUND, the method."""

    def __init__(self, code: str, message: str, kind: str, method: str = "") -> None:
        super().__init__(code, message)
        self.code, self.message, self.kind, self.method = code, message, kind, method

    def describe(self, attempts: int) -> str:
        """The record's error_message: the call, and the budget spent if it was a retryable failure."""
        spent = f"gave up after {attempts} attempts: " if self.kind == RETRY else ""
        return f"{self.method}: {spent}{self.message}"


def _raise_for_status(response: Any, *args: Any, **kwargs: Any) -> None:
    """requests response hook: turn any non-200 answer into HttpStatusError."""
    if response.status_code != 200:
        _ = response.content  # read the body so the connection goes back to the pool
        raise HttpStatusError(response.status_code, response.reason or "")


def make_flickr_api(credentials: Credentials, rest_url: str, timeout_s: float) -> Any:
    """A `flickrapi.FlickrAPI` answering with the raw JSON body, pointed at `rest_url`.

    The body is parsed here (`_decode`), not by flickrapi, so that a cut-off, empty or HTML
    answer is a classified, retryable failure and not whatever exception its parser raises.

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

    api = _FlickrAPI(credentials.api_key, credentials.api_secret, format="json",
                     store_token=False, timeout=timeout_s)
    api.REST_URL = rest_url
    session = requests.Session()
    session.hooks["response"].append(_raise_for_status)
    api.flickr_oauth.session = session
    return api


def _flickr_failure(code: int, message: str) -> _Failure:
    """A well-formed Flickr error answer: not found, retryable, final, or fatal (raised)."""
    if code in FATAL_FLICKR_CODES:
        raise FatalCrawlError(f"Flickr refused the request ({message}); check {ENV_API_KEY}, "
                              f"{ENV_API_SECRET} and {ENV_REST_URL}")
    kind = NOT_FOUND if code == PHOTO_NOT_FOUND else RETRY if code in RETRYABLE_FLICKR_CODES else FINAL
    return _Failure(f"flickr-{code}", message, kind)


def _classify(exc: BaseException, secrets: Sequence[str]) -> _Failure:
    """Map an exception from one API call to a failure (unknown exception types re-raise: bugs)."""
    import requests
    import urllib3
    from flickrapi.exceptions import FlickrError

    message = scrub(str(exc), secrets)[:500]
    if isinstance(exc, FlickrError):
        if exc.code is None:  # flickrapi's own non-200 error (the status hook normally comes first)
            return _Failure("flickr", message, RETRY)
        return _flickr_failure(int(exc.code), message)
    if isinstance(exc, HttpStatusError):
        return _Failure(f"http-{exc.status}", message, RETRY)
    if isinstance(exc, requests.Timeout):
        return _Failure("timeout", message, RETRY)
    broken = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
              requests.exceptions.ContentDecodingError, http.client.HTTPException, urllib3.exceptions.HTTPError,
              builtins.ConnectionError)  # the last three in case one escapes requests' wrapping
    if isinstance(exc, broken):
        return _Failure("connection", message, RETRY)
    raise exc


def _decode(body: Any, secrets: Sequence[str]) -> dict:
    """The JSON object of a status-200 answer with `stat` ok; raises a _Failure for anything else."""
    size = len(body) if isinstance(body, (bytes, str)) else 0
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
    except UnicodeDecodeError as exc:
        raise _Failure("malformed-json", f"not UTF-8 ({size} bytes): {exc}", RETRY) from None
    if not text.strip():
        raise _Failure("malformed-json", "empty body", RETRY)
    try:
        rsp = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError
        what = "an HTML page, not JSON" if text.lstrip().startswith("<") else "JSON cut off or malformed"
        raise _Failure("malformed-json", f"{what} ({size} bytes): {exc}", RETRY) from None
    if not isinstance(rsp, dict):
        raise _Failure("malformed-json", f"JSON {type(rsp).__name__}, not an object ({size} bytes)", RETRY)
    stat, code = rsp.get("stat"), rsp.get("code")
    if stat == "ok":
        return rsp
    if stat == "fail" and isinstance(code, (int, str)) and str(code).isdigit():
        raise _flickr_failure(int(code), scrub(f"Error: {code}: {rsp.get('message', '')}", secrets)[:500])
    raise _Failure("malformed-json", f"no stat ok, nor fail with an error code (stat {str(stat)[:20]!r})", RETRY)


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


class _Stopped(Exception):
    """A worker saw the stop flag (another worker hit a fatal error)."""


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

    def _call(self, method: str, photo_id: str, parse: Callable[[dict], Any]) -> Any:
        """One HTTP call, its answer decoded and parsed by `parse`; raises a _Failure naming `method`."""
        if self.stop.is_set():
            raise _Stopped
        call = getattr(self._api().photos, method)  # build the client before taking a slot
        self.limiter.acquire()
        try:
            try:
                body = call(photo_id=photo_id)
            except Exception as exc:  # classified; unknown exception types re-raise there
                raise _classify(exc, self.credentials.secrets) from None
            rsp = _decode(body, self.credentials.secrets)
            try:
                return parse(rsp)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise _Failure("malformed-response", f"unexpected answer ({exc!r})"[:500], RETRY) from None
        except _Failure as failure:
            failure.method = method
            raise

    def _backoff(self, photo_id: str, retry: int, failure: _Failure) -> None:
        with self._rng_lock:
            delay = backoff_delay(retry, self.config.backoff_base_s, self.config.backoff_max_s, self._rng)
            self.retries += 1
        log.debug("photo %s %s: %s, retry %d in %.2f s", photo_id, failure.method, failure.code, retry, delay)
        if self.stop.wait(delay):
            raise _Stopped

    def fetch(self, photo_id: str) -> dict[str, Any]:
        """The photo's record (one row of CRAWL_SCHEMA): up to `max_attempts` attempts of both calls."""
        calls, fields, failure = 0, None, None
        last: dict[str, _Failure] = {}  # the latest failure of each method
        for attempt in range(1, self.config.max_attempts + 1):
            if failure is not None:
                self._backoff(photo_id, attempt - 1, failure)
            try:
                calls += 1
                fields = self._call("getInfo", photo_id, parse_info)
                calls += 1
                groups = self._call("getAllContexts", photo_id, parse_contexts)
            except _Failure as exc:
                failure = last[exc.method] = exc
                if exc.kind == RETRY:
                    continue
                break
            return {**empty_record(photo_id, "ok", calls), **fields, "groups": groups}
        assert failure is not None
        if failure.kind == NOT_FOUND:
            return empty_record(photo_id, "not_found", calls, failure.code, failure.describe(attempt))
        if fields is not None:  # getInfo answered in some attempt, getAllContexts in none: keep what we have
            why = last["getAllContexts"]
            return {**empty_record(photo_id, "partial", calls, why.code, why.describe(attempt)), **fields}
        return empty_record(photo_id, "error", calls, failure.code, failure.describe(attempt))
