"""`mango crawl`: Flickr photo ids -> Parquet shards of raw tags, groups, title, description.

Optional stage (not in dvc.yaml's default DAG): only datasets without metadata of their own need
it. Credentials come from FLICKR_API_KEY / FLICKR_API_SECRET, the endpoint from FLICKR_REST_URL
(default Flickr's). Re-running the same command resumes an interrupted crawl; adding
`--retry-errors` also fetches again the photos recorded as `error` or `partial`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from stages.common import stage_timer

log = logging.getLogger("mango")

# Third-party loggers that chatter per call (flickrapi logs every call at INFO) or print request
# details at DEBUG (the OAuth signer prints the consumer key); the crawl also scrubs secrets.
_QUIET = ("flickrapi", "oauthlib", "requests_oauthlib", "urllib3")


def command(
    ids: Annotated[Path, typer.Option("--ids", help="Text file: one Flickr photo id per line (blank lines and # comments skipped).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder of Parquet shards (part-NNNNN.parquet); re-run to resume.")],
    max_calls_per_hour: Annotated[float, typer.Option(help="Ceiling on API calls per hour, retries included (Flickr allows 3600 per key).")] = 3000.0,
    workers: Annotated[int, typer.Option(help="Concurrent requests (the rate limit is shared).")] = 4,
    timeout: Annotated[float, typer.Option(help="Per-request timeout in seconds.")] = 30.0,
    max_attempts: Annotated[int, typer.Option(help="Attempts per photo (each asks both API calls) before it is recorded as error or partial.")] = 6,
    retry_base_delay: Annotated[float, typer.Option(help="Seconds before the first retry; doubles per retry, with jitter.")] = 2.0,
    retry_max_delay: Annotated[float, typer.Option(help="Cap on one retry delay in seconds.")] = 120.0,
    shard_size: Annotated[int, typer.Option(help="Photos per Parquet shard.")] = 250,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Also fetch again the photos of --out recorded as error or partial (not not_found), replacing their rows.")] = False,
) -> None:
    from pipeline.data.flickr.client import credentials_from_env, rest_url_from_env
    from pipeline.data.flickr.crawl import crawl
    from pipeline.data.flickr.settings import CrawlConfig
    from pipeline.data.flickr.ids import read_photo_ids

    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    with stage_timer("crawl"):
        config = CrawlConfig(max_calls_per_hour=max_calls_per_hour, workers=workers, timeout_s=timeout,
                             max_attempts=max_attempts, backoff_base_s=retry_base_delay,
                             backoff_max_s=retry_max_delay, shard_size=shard_size)
        credentials = credentials_from_env()
        rest_url = rest_url_from_env()
        photo_ids = read_photo_ids(ids)
        if photo_ids.duplicates:
            extra = sum(photo_ids.duplicates.values())
            examples = ", ".join(list(photo_ids.duplicates)[:5])
            log.warning("%s: %d duplicate line(s) for %d id(s) (e.g. %s); each id is crawled once", ids, extra,
                        len(photo_ids.duplicates), examples)
        crawl(photo_ids.ids, out, credentials, rest_url, config, progress=progress, retry_errors=retry_errors)
