"""The Flickr crawler behind `mango crawl`: photo ids (`ids`), the API client and
one photo's fetch (`client`), rate limit and backoff (`ratelimit`), secret redaction (`redact`),
crash-safe shards and journal (`shards`), the run's knobs (`settings`) and the crawl loop
(`crawl`). Its records are rows of
`pipeline.schemas.CRAWL_SCHEMA`. Imports only the top-level modules and flickrapi.
"""
