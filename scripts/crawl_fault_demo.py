"""Stress the crawl's resumability: SIGKILL `mango crawl` at random moments until it finishes.

Runs against the fake Flickr of the tests (local, no network, fake credentials), with transient
faults injected (5xx, 105, timeouts, dropped connections, bodies cut off, HTML, empty or reset
mid-body, scripted for a fifth of the photos, plus one answer in thirteen cut off at random),
kills the crawl subprocess at random times (so some kills land while a shard is being written),
restarts it each time until it finishes, then runs `--retry-errors` until no photo is left as
error or partial, and compares the final dataset with a fault-free crawl. Prints the numbers as
JSON: calls, faults, photos lost (must be 0), rows written twice (must be 0), calls repeated
because of the kills (computed where every fault is scripted, --truncate-rate 0).

    .venv/bin/python scripts/crawl_fault_demo.py --photos 400 --kills 6
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from pipeline.data.flickr.client import Credentials  # noqa: E402
from pipeline.data.flickr.crawl import crawl  # noqa: E402
from pipeline.data.flickr.settings import CrawlConfig  # noqa: E402
from pipeline.data.flickr.shards import read_crawl  # noqa: E402
from pipeline.schemas import CRAWL_SCHEMA  # noqa: E402
from tests.fake_flickr import BODY_FAULTS, FakeFlickr, make_photos  # noqa: E402

KEY, SECRET = "demo-key-0123456789", "demo-secret-9876543210"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--shard-size", type=int, default=25)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--truncate-rate", type=float, default=1 / 13, help="share of the other answers cut off")
    ap.add_argument("--max-retry-runs", type=int, default=5, help="`--retry-errors` runs at most, after the crawl")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    ids = [str(5_000_000_000 + 13 * i) for i in range(a.photos)]
    photos = make_photos([i for i in ids if rng.random() > 0.05], seed=a.seed)
    faults = {}
    kinds = ["500", "503", "105", "slow", "drop", *BODY_FAULTS]
    for pid in rng.sample(ids, a.photos // 5):
        method = rng.choice(["getInfo", "getAllContexts"] if pid in photos else ["getInfo"])
        faults[(method, pid)] = [rng.choice(kinds) for _ in range(rng.randint(1, 3))]
    fast = dict(max_calls_per_hour=1e9, timeout_s=0.25, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=4)

    with TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with FakeFlickr(photos, api_key=KEY) as clean:
            crawl(ids, tmp / "ref", Credentials(KEY, SECRET), clean.url, CrawlConfig(**fast), progress=False)
            fault_free_calls = clean.total()
        ref = read_crawl(tmp / "ref")
        (tmp / "ids.txt").write_text("\n".join(ids) + "\n")
        out = tmp / "out"
        args = [sys.executable, "-m", "stages.cli", "crawl", "--ids", str(tmp / "ids.txt"), "--out", str(out),
                "--max-calls-per-hour", "100000000", "--workers", str(a.workers), "--timeout", "0.25",
                "--max-attempts", "4", "--retry-base-delay", "0.01", "--retry-max-delay", "0.05",
                "--shard-size", str(a.shard_size), "--no-progress"]
        start = time.perf_counter()
        runs, kills, retry_runs = 0, 0, 0
        with FakeFlickr(photos, api_key=KEY, faults=faults, slow_s=0.6, rate=a.truncate_rate, seed=a.seed) as srv:
            env = {**os.environ, "FLICKR_REST_URL": srv.url, "FLICKR_API_KEY": KEY, "FLICKR_API_SECRET": SECRET}
            while True:
                runs += 1
                proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if kills < a.kills:
                    try:
                        proc.wait(timeout=rng.uniform(1.2, 3.0))  # start-up (imports) takes ~1 s of that
                    except subprocess.TimeoutExpired:
                        proc.send_signal(signal.SIGKILL)
                        proc.wait()
                        kills += 1
                        continue
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise SystemExit(f"crawl failed: {err.decode()}")
                break
            after_crawl = read_crawl(out)["status"].value_counts().rows()
            while retry_runs < a.max_retry_runs and read_crawl(out)["status"].is_in(["error", "partial"]).any():
                retry_runs += 1
                res = subprocess.run([*args, "--retry-errors"], cwd=ROOT, env=env, capture_output=True, check=False)
                if res.returncode != 0:
                    raise SystemExit(f"crawl --retry-errors failed: {res.stderr.decode()}")
        got = pl.read_parquet(out / "*.parquet")
        expected_calls = None
        if not a.truncate_rate:  # one more attempt per fault: getInfo again after a getAllContexts fault
            expected_calls = 0
            for pid in ids:
                info, contexts = (len(faults.get((m, pid), [])) for m in ("getInfo", "getAllContexts"))
                expected_calls += 1 + info + contexts + ((1 + contexts) if pid in photos else 0)
        cols = [c for c in CRAWL_SCHEMA if c != "attempts"]
        numbers = {
            "photos": a.photos, "runs": runs, "kills": kills, "shards": len(list(out.glob("part-*.parquet"))),
            "leftover_files": sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")),
            "retry_runs": retry_runs, "statuses_before_retry_runs": dict(sorted(after_crawl)),
            "fault_free_calls": fault_free_calls, "faults_served": dict(sorted(srv.served.items())),
            "calls_total": srv.total(), "calls_expected_without_kills": expected_calls,
            "calls_repeated_because_of_kills": None if expected_calls is None else srv.total() - expected_calls,
            "rows": got.height, "lost": len(set(ids) - set(got["photo_id"])),
            "duplicates": got.height - got["photo_id"].n_unique(),
            "equal_to_fault_free": got.sort("photo_id").select(cols).equals(ref.select(cols)),
            "seconds": round(time.perf_counter() - start, 1),
        }
    print(json.dumps(numbers, indent=2))
    if numbers["lost"] or numbers["duplicates"] or not numbers["equal_to_fault_free"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
