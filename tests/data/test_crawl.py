"""The Flickr crawl against a fake Flickr: answers parsed right, faults retried or recorded (bodies
cut off, HTML, empty or reset are transient; only well-formed Flickr errors are final), partial
photos kept, the rate limit kept, secrets never written, a crawl killed with SIGKILL resumed
without losing, duplicating or re-fetching finished photos, and `--retry-errors` replacing the
error/partial rows in place, also when killed."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.data.flickr.client import (
    NOT_FOUND, RETRY, RETRY_STATUSES, Credentials, _decode, _Failure, credentials_from_env, rest_url_from_env)
from pipeline.data.flickr.crawl import crawl
from pipeline.data.flickr.settings import CrawlConfig
from pipeline.data.flickr.ids import read_photo_ids
from pipeline.data.flickr.ratelimit import RateLimiter, backoff_delay
from pipeline.data.flickr.shards import ShardStore, read_crawl
from pipeline.errors import MangoError
from pipeline.schemas import CRAWL_SCHEMA
from tests.fake_flickr import BODY_FAULTS, FakeFlickr, make_photos

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "k3y0f7h3t3st5u173xyz", "s3cr3t0f7h3t3st5u17e"
CREDS = Credentials(KEY, SECRET)
FAST = dict(max_calls_per_hour=1e9, timeout_s=0.25, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=4)


def ids_range(n: int, start: int = 4_000_000_000) -> list[str]:
    return [str(start + 7 * i) for i in range(n)]


def compare_columns() -> list[str]:
    """Every column but `attempts`, which counts the calls a run spent and so differs with faults."""
    return [c for c in CRAWL_SCHEMA if c != "attempts"]


# -- input, config, credentials ---------------------------------------------------------------


def test_ids_file_duplicates_blanks_and_comments(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("# NUS-WIDE ids\n123\n\n 456 \n123\n789\n123\n")
    got = read_photo_ids(f)
    assert got.ids == ["123", "456", "789"]
    assert got.duplicates == {"123": 2}
    assert got.blank_lines == 2


@pytest.mark.parametrize("text, message", [
    ("123\n12a4\n", "line 2: '12a4' is not a Flickr photo id"),
    ("\n\n", "no photo ids"),
])
def test_bad_ids_file_names_the_line(tmp_path, text, message):
    f = tmp_path / "ids.txt"
    f.write_text(text)
    with pytest.raises(MangoError, match=message):
        read_photo_ids(f)


def test_credentials_and_url_from_env_only():
    with pytest.raises(MangoError, match="FLICKR_API_KEY, FLICKR_API_SECRET not set"):
        credentials_from_env({})
    with pytest.raises(MangoError, match="FLICKR_API_SECRET not set"):
        credentials_from_env({"FLICKR_API_KEY": KEY})
    creds = credentials_from_env({"FLICKR_API_KEY": KEY, "FLICKR_API_SECRET": SECRET})
    assert KEY not in repr(creds) and SECRET not in repr(creds)
    assert rest_url_from_env({}) == "https://api.flickr.com/services/rest/"
    assert rest_url_from_env({"FLICKR_REST_URL": "http://127.0.0.1:9/x"}) == "http://127.0.0.1:9/x"
    with pytest.raises(MangoError, match="FLICKR_REST_URL"):
        rest_url_from_env({"FLICKR_REST_URL": "ftp://x"})


def test_command_without_credentials_is_one_clear_line(tmp_path):
    (tmp_path / "ids.txt").write_text("123\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLICKR_")}
    res = subprocess.run([sys.executable, "-m", "stages.cli", "crawl", "--ids", str(tmp_path / "ids.txt"),
                          "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: environment variable(s) FLICKR_API_KEY, FLICKR_API_SECRET not set: the crawl needs a Flickr API "
        "key and secret (https://www.flickr.com/services/apps/create/), given only through FLICKR_API_KEY and "
        "FLICKR_API_SECRET"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", [dict(max_calls_per_hour=0), dict(workers=0), dict(shard_size=0),
                                 dict(max_attempts=0), dict(backoff_base_s=5.0, backoff_max_s=1.0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(MangoError, match=next(iter(bad))):
        CrawlConfig(**bad)


def test_default_config_is_polite():
    cfg = CrawlConfig()
    assert cfg.max_calls_per_hour < 3600
    assert cfg.max_attempts >= 3 and cfg.backoff_base_s > 0


# -- politeness ---------------------------------------------------------------------------------


def test_rate_limiter_spaces_calls_evenly():
    now, sleeps = [100.0], []
    limiter = RateLimiter(3600, clock=lambda: now[0], sleep=sleeps.append)  # one call per second
    for _ in range(4):
        limiter.acquire()  # all four ask at t=100
    assert sleeps == [1.0, 2.0, 3.0]
    now[0] = 110.0  # after a pause, no debt and no burst credit beyond the next slot
    limiter.acquire()
    assert sleeps == [1.0, 2.0, 3.0]


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(0)
    delays = [[backoff_delay(r, 1.0, 8.0, rng) for r in range(1, 7)] for _ in range(50)]
    for per_retry in delays:
        for r, d in enumerate(per_retry, start=1):
            ceiling = min(8.0, 2 ** (r - 1))
            assert ceiling / 2 <= d <= ceiling
    assert len({round(d[0], 6) for d in delays}) > 10  # jitter: not all workers retry together


def test_rate_limit_holds_across_workers(tmp_path):
    ids = ids_range(5)
    with FakeFlickr(make_photos(ids), api_key=KEY) as srv:
        crawl(ids, tmp_path / "out", CREDS, srv.url,
              CrawlConfig(**{**FAST, "max_calls_per_hour": 36_000, "workers": 4}), progress=False)
        gaps = [b - a for a, b in zip(srv.arrivals, srv.arrivals[1:])]
    # 36,000 calls/hour = one call start per 0.1 s whatever the workers: no burst, and the 10 calls
    # span 9 intervals (at least 0.75 s below). An arrival lags its paced start by the thread's wake-up and the request's
    # way to the server (tens of ms on a loaded machine), so any k consecutive intervals last at
    # least k x 0.1 s less that lag (bounded here by 0.15 s); a limiter that let calls through
    # together fails this for large k.
    assert len(srv.arrivals) == 10 and len(gaps) == 9, srv.arrivals
    a = srv.arrivals
    short = [(i, k, round(a[i + k] - a[i], 3)) for k in range(1, 10) for i in range(10 - k) if a[i + k] - a[i] < k * 0.1 - 0.15]
    assert not short, f"calls closer than the pacing allows (start, intervals, seconds): {short}"


# -- one photo: answers and faults ----------------------------------------------------------------


def test_answers_are_parsed_and_faults_handled(tmp_path):
    ids = ids_range(8)
    a, b, c, d, e, f, g, h = ids
    photos = make_photos([a, b, d, e, f, g, h], seed=3)
    photos[a]["location"] = {"latitude": 48.8566, "longitude": 2.3522, "locality": "Paris", "region": "IdF",
                             "country": "France"}
    photos[a]["tags"] = ["New York", "été", "geo:lat=48.85"]
    photos[a]["sets"], photos[a]["pools"] = ["Holidays 2008"], ["Dogs of Flickr", "Île-de-France"]
    photos[h]["tags"], photos[h]["sets"], photos[h]["pools"], photos[h]["location"] = [], [], [], None
    faults = {
        ("getInfo", a): ["500", "slow"],  # two failed attempts (retryable), then both answers
        ("getAllContexts", a): ["drop"],  # a third failed attempt: the photo is asked again as a whole
        ("getInfo", b): ["503"] * 4,  # never recovers within max_attempts=4
        ("getInfo", d): ["malformed"],  # a body cut off: retried like a 5xx
        ("getAllContexts", e): ["105"] * 4,  # getInfo answers, getAllContexts never: partial
        ("getAllContexts", g): ["slow"],
    }
    with FakeFlickr(photos, api_key=KEY, faults=faults, slow_s=0.6) as srv:
        summary = crawl(ids, tmp_path / "out", CREDS, srv.url, CrawlConfig(**FAST, shard_size=3), progress=False)
    df = read_crawl(tmp_path / "out")
    assert df.schema == pl.Schema(CRAWL_SCHEMA)
    assert df["photo_id"].to_list() == sorted(ids)
    row = {r["photo_id"]: r for r in df.to_dicts()}

    assert row[a]["status"] == "ok" and row[a]["attempts"] == 1 + 1 + 2 + 2
    assert row[a]["tags"] == ["New York", "été", "geo:lat=48.85"]  # raw tags, not Flickr's normalised ones
    assert row[a]["groups"] == ["Holidays 2008", "Dogs of Flickr", "Île-de-France"]  # sets, then pools
    assert row[a]["title"] == photos[a]["title"] and row[a]["description"] == photos[a]["description"]
    assert (row[a]["owner"], row[a]["owner_name"]) == photos[a]["owner"]
    assert row[a]["location"] == "Paris, IdF, France"
    assert (row[a]["latitude"], row[a]["longitude"]) == (48.8566, 2.3522)
    assert row[h]["status"] == "ok" and row[h]["tags"] == [] and row[h]["groups"] == [] and row[h]["latitude"] is None

    assert (row[b]["status"], row[b]["error_code"], row[b]["attempts"]) == ("error", "http-503", 4)
    assert row[b]["error_message"].startswith("getInfo: gave up after 4 attempts")
    assert (row[c]["status"], row[c]["error_code"]) == ("not_found", "flickr-1")
    assert (row[d]["status"], row[d]["error_code"], row[d]["attempts"]) == ("ok", None, 1 + 2)
    assert (row[e]["status"], row[e]["error_code"], row[e]["attempts"]) == ("partial", "flickr-105", 2 * 4)
    assert row[e]["error_message"].startswith("getAllContexts: gave up after 4 attempts")
    assert row[e]["title"] == photos[e]["title"] and row[e]["groups"] is None  # getInfo's data kept
    assert row[g]["status"] == "ok" and row[g]["attempts"] == 2 + 2

    # Server side: not-found is asked once; retries are bounded by max_attempts per photo.
    assert srv.calls[("getInfo", c)] == 1 and srv.calls[("getAllContexts", c)] == 0
    assert srv.calls[("getInfo", d)] == 2 and srv.calls[("getAllContexts", d)] == 1
    assert srv.calls[("getInfo", b)] == 4 and srv.calls[("getAllContexts", b)] == 0
    assert srv.calls[("getInfo", e)] == srv.calls[("getAllContexts", e)] == 4
    assert (summary.ok, summary.not_found, summary.error, summary.partial) == (5, 1, 1, 1)
    assert summary.calls == srv.total() and summary.retries == 3 + 3 + 1 + 3 + 1
    assert all("nojsoncallback=1" in body for body in srv.bodies)


@pytest.mark.parametrize("method", ["getInfo", "getAllContexts"])
@pytest.mark.parametrize("kind", BODY_FAULTS)
def test_bodies_cut_off_html_empty_or_reset_are_retried(tmp_path, kind, method):
    """Status 200 without a usable JSON answer is transient: each costs one attempt, then the photo is
    ok (a missing photo, once it is answered properly, not_found)."""
    ids = ids_range(3)
    photos = make_photos(ids[:2], seed=5)
    faults = {(method, ids[0]): [kind, kind], ("getInfo", ids[2]): [kind, kind]}
    with FakeFlickr(photos, api_key=KEY, faults=faults) as srv:
        summary = crawl(ids, tmp_path / "out", CREDS, srv.url, CrawlConfig(**FAST), progress=False)
    row = {r["photo_id"]: r for r in read_crawl(tmp_path / "out").to_dicts()}
    failed_attempt = 1 if method == "getInfo" else 2  # calls of an attempt that fails at `method`
    assert (row[ids[0]]["status"], row[ids[0]]["error_code"]) == ("ok", None)
    assert row[ids[0]]["attempts"] == 2 * failed_attempt + 2
    assert row[ids[0]]["tags"] == photos[ids[0]]["tags"]
    assert row[ids[0]]["groups"] == photos[ids[0]]["sets"] + photos[ids[0]]["pools"]
    assert (row[ids[1]]["status"], row[ids[1]]["attempts"]) == ("ok", 2)
    assert (row[ids[2]]["status"], row[ids[2]]["error_code"], row[ids[2]]["attempts"]) == ("not_found", "flickr-1", 3)
    assert srv.served[kind] == 4 and summary.retries == 4


@pytest.mark.parametrize("fault, method, status, code, calls", [
    ("fail-2", "getInfo", "error", "flickr-2", 1),  # a well-formed Flickr error: final, asked once
    ("fail-2", "getAllContexts", "partial", "flickr-2", 2),  # final too, getInfo's data kept
    ("fail-1", "getAllContexts", "not_found", "flickr-1", 2),  # deleted between the two calls
    ("fail-106", "getInfo", "ok", None, 3),  # 105/106: temporary, retried
])
def test_flickr_error_answers_by_class(tmp_path, fault, method, status, code, calls):
    ids = ids_range(1)
    with FakeFlickr(make_photos(ids), api_key=KEY, faults={(method, ids[0]): [fault]}) as srv:
        crawl(ids, tmp_path / "out", CREDS, srv.url, CrawlConfig(**FAST), progress=False)
        assert srv.total() == calls
    (row,) = read_crawl(tmp_path / "out").to_dicts()
    assert (row["status"], row["error_code"], row["attempts"]) == (status, code, calls)
    assert (row["title"] is not None) == (status in ("ok", "partial"))
    if status in ("error", "partial"):
        assert row["error_message"] == f"{method}: Error: {fault[5:]}: Flickr error {fault[5:]}"


@pytest.mark.parametrize("body, says", [
    (b"", "empty body"), (b" \n", "empty body"), (b"\xff\xfe{}", "not UTF-8"), (b"<html>Oops</html>", "HTML page"),
    (b'{"stat": "ok", "photo": {"id"', "cut off"), (b"null", "JSON NoneType"), (b"[1, 2]", "JSON list"),
    (b'{"stat": "fail", "message": "no code"}', "no stat ok"), (b'{"photo": {}}', "no stat ok"),
])
def test_bodies_that_are_not_a_flickr_json_object_are_retryable(body, says):
    with pytest.raises(_Failure) as failure:
        _decode(body, [KEY])
    assert (failure.value.code, failure.value.kind) == ("malformed-json", RETRY) and says in failure.value.message
    assert _decode(b'{"stat": "ok", "x": 1}', [KEY]) == {"stat": "ok", "x": 1}
    with pytest.raises(_Failure) as failure:
        _decode(b'{"stat": "fail", "code": 1, "message": "Photo not found"}', [KEY])
    assert (failure.value.code, failure.value.kind) == ("flickr-1", NOT_FOUND)


def test_high_truncation_rate_with_enough_attempts_ends_every_photo_ok(tmp_path):
    """30 % of all answers cut off, HTML, empty or reset, 12 attempts: every existing photo ends ok
    with its tags and groups, every missing one not_found, none twice, and each fault cost exactly
    one retry."""
    ids = ids_range(40)
    missing = set(ids[::7])
    photos = make_photos([i for i in ids if i not in missing], seed=2)
    cfg = CrawlConfig(**{**FAST, "max_attempts": 12}, shard_size=7)
    with FakeFlickr(photos, api_key=KEY) as clean:
        crawl(ids, tmp_path / "ref", CREDS, clean.url, cfg, progress=False)
    with FakeFlickr(photos, api_key=KEY, rate=0.3, rate_kinds=BODY_FAULTS, seed=11) as srv:
        summary = crawl(ids, tmp_path / "out", CREDS, srv.url, cfg, progress=False)
    assert set(srv.served) == set(BODY_FAULTS) and sum(srv.served.values()) >= 20
    got = pl.read_parquet(tmp_path / "out" / "*.parquet")
    assert got.height == got["photo_id"].n_unique() == len(ids)
    for r in got.to_dicts():
        pid = r["photo_id"]
        if pid in missing:
            assert (r["status"], r["error_code"]) == ("not_found", "flickr-1")
        else:
            assert (r["status"], r["error_code"]) == ("ok", None), r
            assert r["tags"] == photos[pid]["tags"] and r["groups"] == photos[pid]["sets"] + photos[pid]["pools"]
    assert got.sort("photo_id").select(compare_columns()).equals(read_crawl(tmp_path / "ref").select(compare_columns()))
    counts = (summary.ok, summary.not_found, summary.error, summary.partial)
    assert counts == (len(ids) - len(missing), len(missing), 0, 0)
    assert summary.retries == sum(srv.served.values()) and summary.calls == srv.total()


def test_contexts_cut_off_past_the_budget_is_partial_with_getinfo_kept(tmp_path):
    ids = ids_range(3)
    a, b, c = ids
    photos = make_photos(ids, seed=4)
    photos[a]["location"] = {"latitude": 1.5, "longitude": 2.5, "locality": "Tokyo", "region": "Kanto",
                             "country": "Japan"}
    faults = {
        ("getAllContexts", a): ["truncated"] * 4,  # every attempt: getInfo fine, getAllContexts cut off
        ("getInfo", b): ["ok", "ok", "ok", "empty"],  # the last attempt's getInfo fails too: keep the 3rd's
        ("getAllContexts", b): ["html"] * 3,
        ("getInfo", c): ["reset"] * 4,  # getInfo never answers: nothing to keep, an error
    }
    with FakeFlickr(photos, api_key=KEY) as clean:
        crawl(ids, tmp_path / "ref", CREDS, clean.url, CrawlConfig(**FAST), progress=False)
    ref = {r["photo_id"]: r for r in read_crawl(tmp_path / "ref").to_dicts()}
    with FakeFlickr(photos, api_key=KEY, faults=faults) as srv:
        summary = crawl(ids, tmp_path / "out", CREDS, srv.url, CrawlConfig(**FAST), progress=False)
    row = {r["photo_id"]: r for r in read_crawl(tmp_path / "out").to_dicts()}
    info_fields = ["title", "description", "tags", "owner", "owner_name", "location", "latitude", "longitude"]
    for pid in (a, b):
        assert (row[pid]["status"], row[pid]["error_code"], row[pid]["groups"]) == ("partial", "malformed-json", None)
        assert row[pid]["error_message"].startswith("getAllContexts: gave up after 4 attempts: ")
        assert {k: row[pid][k] for k in info_fields} == {k: ref[pid][k] for k in info_fields}
    assert row[a]["location"] == "Tokyo, Kanto, Japan" and row[a]["tags"] == photos[a]["tags"]
    assert (row[a]["attempts"], row[b]["attempts"]) == (8, 7)
    assert (row[c]["status"], row[c]["error_code"], row[c]["title"]) == ("error", "connection", None)
    assert row[c]["error_message"].startswith("getInfo: gave up after 4 attempts: ")
    assert (summary.ok, summary.partial, summary.error) == (0, 2, 1)
    assert srv.calls[("getAllContexts", c)] == 0


def test_invalid_key_stops_the_crawl_without_echoing_it(tmp_path):
    ids = ids_range(6)
    with FakeFlickr(make_photos(ids), api_key="the-right-key") as srv:
        with pytest.raises(MangoError, match="Invalid API Key") as err:
            crawl(ids, tmp_path / "out", CREDS, srv.url, CrawlConfig(**FAST, workers=2), progress=False)
        assert srv.total() <= 2 + 2 * 2  # stopped at once, not one failed call per photo
    assert KEY not in str(err.value) and SECRET not in str(err.value)


def test_secrets_never_reach_logs_or_outputs(tmp_path, caplog):
    """Even at DEBUG, where flickrapi and the OAuth signer print the consumer key."""
    ids = ids_range(6)
    faults = {("getInfo", ids[0]): ["500"] * 4, ("getInfo", ids[1]): ["malformed"], ("getInfo", ids[2]): ["drop"],
              ("getAllContexts", ids[3]): ["html"] * 4}
    caplog.set_level(logging.DEBUG)
    with FakeFlickr(make_photos(ids[:-1]), api_key=KEY, faults=faults) as srv:
        crawl(ids, tmp_path / "out", CREDS, srv.url, CrawlConfig(**FAST, shard_size=2), progress=False)
    assert "Calling" in caplog.text  # flickrapi's own debug lines were captured...
    for secret in (KEY, SECRET):
        assert secret not in caplog.text  # ...with the secrets scrubbed
        for path in (tmp_path / "out").rglob("*"):
            assert secret.encode() not in path.read_bytes(), path
    assert set(read_crawl(tmp_path / "out")["status"]) == {"ok", "error", "not_found", "partial"}


# -- resumability -------------------------------------------------------------------------------


def test_resume_ignores_temp_shards_and_recovers_the_journal(tmp_path):
    ids = ids_range(12)
    photos = make_photos(ids)
    out = tmp_path / "out"
    with FakeFlickr(photos, api_key=KEY) as srv:
        crawl(ids[:4], out, CREDS, srv.url, CrawlConfig(**FAST, shard_size=10), progress=False)
        crawl(ids, tmp_path / "ref", CREDS, srv.url, CrawlConfig(**FAST), progress=False)
        ref = read_crawl(tmp_path / "ref")
        # What a kill leaves behind: a half-written shard, and a journal whose last line was cut.
        (out / ".part-00001.parquet.tmp-abc123").write_bytes(b"PAR1 half a shard")
        journaled = ref.filter(pl.col("photo_id").is_in(ids[4:6])).to_dicts()
        lines = [json.dumps(r) + "\n" for r in journaled]
        (out / ".journal-00001.jsonl").write_text("".join(lines) + json.dumps(ref.to_dicts()[6])[:40])
        before = srv.calls.copy()
        summary = crawl(ids, out, CREDS, srv.url, CrawlConfig(**FAST, shard_size=10), progress=False)
        again = srv.calls - before
    assert summary.recovered_from_journal == 2 and summary.already_done == 6
    assert {pid for _, pid in again} == set(ids[6:])  # journaled photos are not fetched again
    names = sorted(p.name for p in out.iterdir())  # temp shard and journal gone, lock released
    assert len(names) == 3 and all(n.startswith("part-") and n.endswith(".parquet") for n in names), names
    got = pl.read_parquet(out / "*.parquet")
    assert got.height == got["photo_id"].n_unique() == 12
    assert got.sort("photo_id").select(compare_columns()).equals(ref.select(compare_columns()))


def test_a_shard_is_never_half_written(tmp_path, monkeypatch):
    """A failure while writing a shard leaves no file under a final name and keeps the journal."""
    store = ShardStore(tmp_path, shard_size=2)
    row = dict.fromkeys(CRAWL_SCHEMA) | {"photo_id": "1", "status": "not_found", "attempts": 1}
    store.add(row)

    def boom(self, path):
        Path(path).write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        store.add(row | {"photo_id": "2"})
    monkeypatch.undo()
    assert not list(tmp_path.glob("part-*")) and not list(tmp_path.glob(".part-*"))
    assert len((tmp_path / ".journal-00000.jsonl").read_text().splitlines()) == 2
    store.close()
    assert ShardStore(tmp_path, shard_size=2).done == {"1", "2"}  # recovered from the journal
    assert pl.read_parquet(tmp_path / "*.parquet")["photo_id"].sort().to_list() == ["1", "2"]


def _finished_ids(out: Path) -> tuple[set[str], int, int]:
    """Ids in complete shards or complete journal lines, shard count, journal records."""
    shards = sorted(out.glob("part-*.parquet"))
    done = set(pl.concat([pl.read_parquet(s, columns=["photo_id"]) for s in shards])["photo_id"]) if shards else set()
    journal = 0
    for j in out.glob(".journal-*.jsonl"):
        for line in j.read_text().splitlines(keepends=True):
            if line.endswith("\n"):
                done.add(json.loads(line)["photo_id"])
                journal += 1
    return done, len(shards), journal


def test_kill_minus_9_and_resume_equals_a_fault_free_crawl(tmp_path):
    """The crawl runs as `mango crawl` in a subprocess against a faulty server, is SIGKILLed once
    shards exist and calls are in flight, and is started again. The result must equal a fault-free
    crawl row for row; the server's counters show that only the in-flight photos were re-fetched."""
    rng = random.Random(7)
    workers, shard_size, n = 4, 20, 200
    ids = ids_range(n)
    missing = set(rng.sample(ids, 10))
    photos = make_photos([i for i in ids if i not in missing], seed=1)
    broken = {("getInfo", i): ["malformed"] * 50 for i in rng.sample(sorted(photos), 3)}  # error rows, both runs
    faults = dict(broken)
    kinds = ["500", "503", "105", "slow", "drop", *BODY_FAULTS]
    for pid in rng.sample(sorted(set(ids) - {p for _, p in broken}), 40):
        method = rng.choice(["getInfo", "getAllContexts"] if pid in photos else ["getInfo"])
        faults[(method, pid)] = [rng.choice(kinds) for _ in range(rng.randint(1, 3))]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids[:50]) + "\n\n" + "\n".join(ids[50:]) + "\n" + "\n".join(ids[:3]) + "\n")

    t0 = time.perf_counter()
    with FakeFlickr(photos, api_key=KEY, faults=dict(broken)) as clean:
        crawl(ids, tmp_path / "ref", CREDS, clean.url, CrawlConfig(**FAST, workers=workers), progress=False)
        reference_calls = clean.total()
    ref = read_crawl(tmp_path / "ref")

    out = tmp_path / "out"
    args = [sys.executable, "-m", "stages.cli", "crawl", "--ids", str(ids_file), "--out", str(out),
            "--max-calls-per-hour", "100000000", "--workers", str(workers), "--timeout", "0.25",
            "--max-attempts", "4", "--retry-base-delay", "0.01", "--retry-max-delay", "0.05",
            "--shard-size", str(shard_size)]
    with FakeFlickr(photos, api_key=KEY, faults=faults, slow_s=0.6, hold_after=130) as srv:
        env = {**os.environ, "FLICKR_REST_URL": srv.url, "FLICKR_API_KEY": KEY, "FLICKR_API_SECRET": SECRET}
        first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not (srv.held.is_set() and len(list(out.glob("part-*.parquet"))) >= 2):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        time.sleep(0.1)  # let every worker reach the held server
        first.send_signal(signal.SIGKILL)
        stdout1, stderr1 = first.communicate()
        assert first.returncode == -signal.SIGKILL
        at_kill = srv.calls.copy()
        done_at_kill, shards_at_kill, journal_at_kill = _finished_ids(out)
        srv.release()
        second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert second.returncode == 0, second.stderr.decode()
        after = srv.calls - at_kill
    elapsed = time.perf_counter() - t0

    # Output: one row per distinct id, equal to the fault-free crawl, and nothing else in the folder.
    got = pl.read_parquet(out / "*.parquet")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == []
    assert got.height == got["photo_id"].n_unique() == n
    assert got.sort("photo_id").select(compare_columns()).equals(ref.select(compare_columns()))
    assert set(got["status"]) == {"ok", "not_found", "error"}

    # Calls: each fault costs exactly one more attempt of the photo (both calls again when getAllContexts
    # failed), a broken photo its whole budget; the kill costs only the photos in flight.
    expected = {}
    for pid in ids:
        info, contexts = (len(faults.get((m, pid), [])) for m in ("getInfo", "getAllContexts"))
        expected[("getInfo", pid)] = 4 if ("getInfo", pid) in broken else 1 + info + contexts
        if pid in photos and ("getInfo", pid) not in broken:
            expected[("getAllContexts", pid)] = 1 + contexts
    total = at_kill + after
    assert set(total) == set(expected)
    extra = {key: total[key] - expected[key] for key in expected}
    assert min(extra.values()) >= 0, {k: (total[k], faults.get(k)) for k, x in extra.items() if x < 0}
    in_flight = {pid for (_, pid) in at_kill} - done_at_kill
    refetched = {pid for (_, pid), x in extra.items() if x > 0}
    fetched_again = {pid for (_, pid) in after} & {pid for (_, pid) in at_kill}
    assert not {pid for (_, pid) in after} & done_at_kill  # nothing finished is asked for again
    assert refetched <= in_flight and fetched_again <= in_flight
    assert 1 <= len(in_flight) <= workers

    for secret in (KEY, SECRET):
        for blob in (stdout1, stderr1, second.stdout, second.stderr):
            assert secret.encode() not in blob
        for path in out.rglob("*"):
            assert secret.encode() not in path.read_bytes()
    assert b"duplicate" in second.stderr and b"3 duplicate line(s)" in second.stderr

    numbers = {
        "photos": n, "id_lines": n + 3, "duplicate_lines": 3, "not_found": len(missing), "malformed": len(broken),
        "faulted_calls_injected": sum(len(v) for k, v in faults.items() if k not in broken),
        "fault_free_calls": reference_calls, "calls_before_kill": sum(at_kill.values()),
        "calls_after_restart": sum(after.values()), "calls_total": sum(total.values()),
        "calls_expected_without_kill": sum(expected.values()), "extra_calls_due_to_kill": sum(extra.values()),
        "shards_at_kill": shards_at_kill, "journal_records_at_kill": journal_at_kill,
        "finished_at_kill": len(done_at_kill), "in_flight_at_kill": len(in_flight),
        "photos_refetched_after_kill": len(refetched | fetched_again), "rows": got.height,
        "lost": n - got["photo_id"].n_unique(), "duplicates": got.height - got["photo_id"].n_unique(),
        "seconds": round(elapsed, 1),
    }
    (tmp_path / "crawl_fault_numbers.json").write_text(json.dumps(numbers, indent=2))
    print("\ncrawl kill -9 / resume:", json.dumps(numbers))


# -- --retry-errors -------------------------------------------------------------------------------


def _crawl_with_errors(tmp_path: Path, n: int, n_errors: int, shard_size: int, workers: int = 4) -> tuple:
    """A finished crawl in tmp_path/"out" whose faults outlasted the budget (max_attempts=2) for
    `n_errors` photos, some of them missing ones, and for two photos' getAllContexts, then stopped;
    the server (still running, healed by its scripts' end) and a fault-free reference."""
    ids = ids_range(n)
    missing = set(ids[3::9])
    photos = make_photos([i for i in ids if i not in missing], seed=6)
    kinds = ["503", *BODY_FAULTS]
    errors = ids[1::max(1, n // n_errors)][:n_errors]
    faults = {("getInfo", pid): [kinds[k % len(kinds)]] * 2 for k, pid in enumerate(errors)}
    partial = [pid for pid in ids if pid in photos and pid not in errors][:2]
    faults.update({("getAllContexts", pid): ["truncated", "reset"] for pid in partial})
    cfg = CrawlConfig(**{**FAST, "max_attempts": 2}, shard_size=shard_size, workers=workers)
    with FakeFlickr(photos, api_key=KEY) as clean:
        crawl(ids, tmp_path / "ref", CREDS, clean.url, cfg, progress=False)
    srv = FakeFlickr(photos, api_key=KEY, faults=faults).start()
    summary = crawl(ids, tmp_path / "out", CREDS, srv.url, cfg, progress=False)
    assert (summary.error, summary.partial) == (len(errors), len(partial))
    return ids, errors, partial, missing, srv, cfg, read_crawl(tmp_path / "ref")


def _journal_ids(out: Path) -> set[str]:
    """Ids of the complete journal lines."""
    lines = [line for j in out.glob(".journal-*.jsonl") for line in j.read_text().splitlines(keepends=True)]
    return {json.loads(line)["photo_id"] for line in lines if line.endswith("\n")}


def _replaced(df: pl.DataFrame, ids: set[str]) -> set[str]:
    """Those of `ids` whose row in `df` is no longer error or partial."""
    done = df.filter(pl.col("photo_id").is_in(list(ids)) & ~pl.col("status").is_in(list(RETRY_STATUSES)))
    return set(done["photo_id"])


def _assert_one_row_per_id_equal_to(out: Path, ids: list[str], ref: pl.DataFrame) -> pl.DataFrame:
    """The folder, read as a user would (glob) and through read_crawl: one row per id, equal to ref."""
    got = pl.read_parquet(out / "*.parquet")
    assert got.height == got["photo_id"].n_unique() == len(ids)
    assert read_crawl(out).select(compare_columns()).equals(ref.select(compare_columns()))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == []
    return got


def test_retry_errors_refetches_error_and_partial_rows_in_place(tmp_path, caplog):
    ids, errors, partial, missing, srv, cfg, ref = _crawl_with_errors(tmp_path, 24, 6, shard_size=5)
    out = tmp_path / "out"
    try:
        shards = sorted(p.name for p in out.glob("part-*.parquet"))
        before = srv.calls.copy()
        caplog.set_level(logging.INFO)
        plain = crawl(ids, out, CREDS, srv.url, cfg, progress=False)  # the same command again: nothing to do
        assert plain.fetched == 0 and srv.calls == before
        assert f"{len(errors) + len(partial)} of the {len(ids)} photos are recorded as error or partial" in caplog.text
        assert "--retry-errors" in caplog.text

        summary = crawl(ids, out, CREDS, srv.url, cfg, progress=False, retry_errors=True)
        again = srv.calls - before
    finally:
        srv.stop()
    retried = set(errors) | set(partial)
    assert {pid for _, pid in again} == retried  # only error/partial rows are asked again, never not_found
    assert summary.retried == summary.fetched == len(retried) and summary.already_done == len(ids) - len(retried)
    n_missing_errors = len(set(errors) & missing)
    assert (summary.ok, summary.not_found, summary.error, summary.partial) == (
        len(retried) - n_missing_errors, n_missing_errors, 0, 0)
    got = _assert_one_row_per_id_equal_to(out, ids, ref)
    assert set(got.filter(pl.col("photo_id").is_in(list(missing)))["status"]) == {"not_found"}
    assert sorted(p.name for p in out.glob("part-*.parquet")) == shards  # rows replaced in their shards
    assert "crawl: 8 fetched (7 ok, 1 not found, 0 errors, 0 partial; 8 re-fetched from error/partial)" in caplog.text


def test_store_replaces_only_error_and_partial_rows(tmp_path):
    store = ShardStore(tmp_path, shard_size=10)
    row = dict.fromkeys(CRAWL_SCHEMA) | {"attempts": 1}
    for pid, status in [("1", "ok"), ("2", "error"), ("3", "partial"), ("4", "not_found")]:
        store.add(row | {"photo_id": pid, "status": status})
    store.flush()
    store.close()
    store = ShardStore(tmp_path, shard_size=10)
    for pid in ("1", "4"):
        with pytest.raises(AssertionError, match="finished twice"):
            store.add(row | {"photo_id": pid, "status": "ok"})
    store.add(row | {"photo_id": "2", "status": "ok"})
    with pytest.raises(AssertionError, match="finished twice"):  # once per run
        store.add(row | {"photo_id": "2", "status": "ok"})
    store.add(row | {"photo_id": "3", "status": "error", "attempts": 3})
    store.flush()
    store.close()
    got = pl.read_parquet(tmp_path / "*.parquet")
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1 and not list(tmp_path.glob(".journal-*"))
    assert got.select("photo_id", "status", "attempts").rows() == [
        ("1", "ok", 1), ("2", "ok", 1), ("3", "error", 3), ("4", "not_found", 1)]


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing catches it, no clean-up code finishes the job."""


def test_crash_between_shard_rewrites_of_a_retry_run_is_finished_by_the_next_start(tmp_path, monkeypatch):
    """A retry run dies after the first of the shard rewrites of a commit: every shard is complete and
    every id in exactly one of them; the next start finishes the rewrites from the journal without
    fetching those photos again."""
    ids, errors, partial, _, srv, cfg, ref = _crawl_with_errors(tmp_path, 30, 12, shard_size=5, workers=1)
    out = tmp_path / "out"
    retried = set(errors) | set(partial)
    rewrite, rewrites = ShardStore._rewrite, []

    def dies_after_one(shard, records):
        if rewrites:
            raise Killed
        rewrites.append(shard.name)
        return rewrite(shard, records)

    try:
        monkeypatch.setattr(ShardStore, "_rewrite", staticmethod(dies_after_one))
        before = srv.calls.copy()
        with pytest.raises(Killed):
            crawl(ids, out, CREDS, srv.url, cfg, progress=False, retry_errors=True)
        monkeypatch.undo()
        fetched = {pid for _, pid in srv.calls - before}
        journaled = _journal_ids(out)
        assert len(journaled) == cfg.shard_size and len(rewrites) == 1  # killed inside the first commit

        mid = pl.read_parquet(out / "*.parquet")  # what a reader sees between the kill and the rerun
        assert mid.height == mid["photo_id"].n_unique() == len(ids)
        fixed = _replaced(mid, retried)
        assert fixed < journaled and len(fixed) == 4  # one shard's rows replaced, the next shard's not yet

        before = srv.calls.copy()
        summary = crawl(ids, out, CREDS, srv.url, cfg, progress=False, retry_errors=True)
        again = {pid for _, pid in srv.calls - before}
    finally:
        srv.stop()
    assert summary.recovered_from_journal == len(journaled - fixed) == 1
    assert again == retried - journaled  # journaled photos are not fetched again
    assert journaled <= fetched <= retried
    _assert_one_row_per_id_equal_to(out, ids, ref)


def test_kill_minus_9_during_a_retry_run_then_rerun(tmp_path):
    """`mango crawl --retry-errors` SIGKILLed after one commit and with records in the journal: the
    folder keeps one row per id meanwhile, and the same command again finishes the job, fetching
    only the photos that were not journaled."""
    ids, errors, partial, missing, srv, _, ref = _crawl_with_errors(tmp_path, 30, 12, shard_size=4)
    out = tmp_path / "out"
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    args = [sys.executable, "-m", "stages.cli", "crawl", "--ids", str(tmp_path / "ids.txt"), "--out", str(out),
            "--max-calls-per-hour", "100000000", "--workers", "1", "--timeout", "0.25", "--max-attempts", "2",
            "--retry-base-delay", "0.01", "--retry-max-delay", "0.05", "--shard-size", "4", "--retry-errors"]
    env = {**os.environ, "FLICKR_REST_URL": srv.url, "FLICKR_API_KEY": KEY, "FLICKR_API_SECRET": SECRET}
    retried = set(errors) | set(partial)
    try:
        before = srv.calls.copy()
        # One worker, photos in id order: 4 ids, then 2 more (one of them missing: one call) in 12 calls; the
        # 13th call waits, so at the kill 4 replaced rows are committed and 2 are in the journal.
        srv.hold_after = len(srv.arrivals) + 12
        first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not (srv.held.is_set() and len(_journal_ids(out)) == 2):  # the commit of the first 4 is over
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        stdout1, stderr1 = first.communicate()
        assert first.returncode == -signal.SIGKILL
        journaled = _journal_ids(out)
        mid = pl.read_parquet(out / "*.parquet")
        assert mid.height == mid["photo_id"].n_unique() == len(ids)  # nothing lost or doubled, even now
        committed = _replaced(mid, retried)
        assert (len(committed), len(journaled)) == (4, 2) and not committed & journaled
        at_kill = srv.calls - before
        srv.release()
        second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr.decode()
        after = {pid for _, pid in srv.calls - before - at_kill}
    finally:
        srv.stop()
    asked_before_kill = {pid for _, pid in at_kill}
    assert len(asked_before_kill) == 7  # 6 finished, 1 in flight
    assert after == retried - committed - journaled  # the one in flight, and those not reached
    assert b"recovered 2 finished photos from the journal" in second.stderr
    n, nf = len(after), len(after & missing)
    line = f"crawl: {n} fetched ({n - nf} ok, {nf} not found, 0 errors, 0 partial; {n} re-fetched from error/partial)"
    assert line.encode() in second.stderr
    _assert_one_row_per_id_equal_to(out, ids, ref)
    for secret in (KEY, SECRET):
        for blob in (stdout1, stderr1, second.stdout, second.stderr):
            assert secret.encode() not in blob
        for path in out.rglob("*"):
            assert secret.encode() not in path.read_bytes()
