"""The crawl's input: a text file of Flickr photo ids, one a line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import MangoError

ID_RE = re.compile(r"^\d+$")


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
            if not ID_RE.match(value):
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
