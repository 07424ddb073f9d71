"""Open the results page in headless Chromium, check what it shows, and take a screenshot.

    python scripts/browse_check.py [reports/browse/index.html] [--screenshot reports/browse_check.png] [--min-images 20]

Checks, on the DOM Chromium built (after the page's script ran): at least --min-images image cards,
every <img> pointing at a file beside the page, the metrics table with a MangoNet and an NCNN row,
and each card showing MangoNet's and NCNN's predictions. Exit 1 with the reason otherwise; exit 2
when no Chromium is installed (Debian: `apt-get install chromium`; `make browse-check` does it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cards, self.images, self.rows, self._cell, self.text = 0, [], [], False, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article" and "card" in a.get("class", ""):
            self.cards += 1
        if tag == "img":
            self.images.append(a.get("src", ""))
        self._cell = tag == "td"

    def handle_data(self, data):
        self.text.append(data)
        if self._cell:
            self.rows.append(data.strip())
            self._cell = False


def browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def check(page: Path, screenshot: Path, min_images: int) -> list[str]:
    exe = browser()
    if exe is None:
        raise FileNotFoundError("no Chromium found (tried " + ", ".join(BROWSERS) + "): apt-get install chromium")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    subprocess.run([*flags, "--window-size=1400,2400", f"--screenshot={screenshot.resolve()}", url],
                   capture_output=True, text=True, timeout=120)
    parsed = Page()
    parsed.feed(dom)
    problems = []
    if parsed.cards < min_images:
        problems.append(f"{parsed.cards} image cards rendered, expected at least {min_images}")
    missing = [src for src in parsed.images if not (page.parent / src).is_file()]
    if missing:
        problems.append(f"{len(missing)} <img> without a file beside the page (first: {missing[0]})")
    for method in ("MangoNet", "NCNN"):
        if method not in parsed.rows:
            problems.append(f"no {method} row in the metrics table")
    text = " ".join(parsed.text)
    if text.count("MangoNet") < parsed.cards or text.count("NCNN") < parsed.cards:
        problems.append("not every card shows MangoNet's and NCNN's predictions")
    if not screenshot.is_file() or screenshot.stat().st_size < 10_000:
        problems.append(f"no screenshot written to {screenshot}")
    return problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", nargs="?", type=Path, default=Path("reports/browse/index.html"))
    ap.add_argument("--screenshot", type=Path, default=Path("reports/browse_check.png"))
    ap.add_argument("--min-images", type=int, default=20)
    args = ap.parse_args(argv)
    if not args.page.is_file():
        print(f"browse-check: {args.page} not found; run `dvc repro browse` first")
        return 1
    try:
        problems = check(args.page, args.screenshot, args.min_images)
    except FileNotFoundError as exc:
        print(f"browse-check: {exc}")
        return 2
    if problems:
        print("browse-check: FAILED: " + "; ".join(problems))
        return 1
    print(f"browse-check: {args.page} renders in headless Chromium; screenshot {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
