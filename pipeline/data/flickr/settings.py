"""The knobs of one crawl run (`mango crawl` options), shared by the client and the crawl loop."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import MangoError


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
    """Attempts per photo, first one included; each asks getInfo then getAllContexts, and any retryable
    failure starts the next one after a backoff. Then the photo is recorded as error or partial."""
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
