"""Secrets: the API key and secret are read from the environment only, travel in the OAuth
header, and are scrubbed from every recorded error message and every log record emitted while
the crawl runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence


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
