"""One photo through the Flickr REST API: credentials, the `flickrapi` client, retries and the
classification of failures, and the parsing of the two answers into a record.

For every photo id two Flickr REST methods are called: `flickr.photos.getInfo` (title,
description, raw tags, owner, location) and `flickr.photos.getAllContexts` (titles of the sets
and group pools the photo is in).

Robustness: timeouts, connection errors, HTTP 5xx / 429 and Flickr error 105 ("service
unavailable") are retried with exponential backoff and jitter, a bounded number of times, after
which the photo is recorded with status `error` and the error code. Flickr error 1 ("photo not
found") is final on the first answer: status `not_found`. A body that is not JSON is recorded
(status `error`, code `malformed-json`), never fatal. Errors that concern every photo (invalid
key, bad signature) stop the crawl with a MangoError.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Sequence
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

STATUSES = ("ok", "not_found", "error")  # of a record (CRAWL_SCHEMA row)

# Flickr error codes.
PHOTO_NOT_FOUND = 1
RETRYABLE_FLICKR_CODES = frozenset({105, 106})  # service unavailable, write failed (temporary)
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
