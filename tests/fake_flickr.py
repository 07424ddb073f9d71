"""A fake Flickr REST endpoint on 127.0.0.1 for the crawl tests, with deterministic faults.

It answers `flickr.photos.getInfo` and `flickr.photos.getAllContexts` the way Flickr's JSON API
does (`format=json`, `nojsoncallback=1`, failures as {"stat": "fail", "code", "message"}),
checks that calls carry the expected OAuth consumer key, and counts calls per
(method, photo id). Faults are scripted per (method, photo id) as a list of what the first,
second, ... call gets before answers become normal:

    "500"        HTTP 500 with an HTML body
    "503"        HTTP 503
    "slow"       a correct answer sent after `slow_s` seconds (beyond the client timeout)
    "drop"       the connection closed without an answer
    "105"        {"stat": "fail", "code": 105, "message": "Service currently unavailable"}
    "fail-N"     {"stat": "fail", "code": N, ...}: any other well-formed Flickr error answer
    "truncated"  status 200, a body cut in the middle of the JSON (alias: "malformed")
    "html"       status 200, an HTML error page instead of JSON
    "empty"      status 200, an empty body
    "reset"      status 200 and the full Content-Length, half the body, then a connection reset
    "ok"         the normal answer (to script faults after some good answers)

A script longer than a run's attempt budget makes the photo fail that run, then heals (calls are
counted for the server's whole life, so a later run gets the normal answers). Besides scripts,
`rate` gives every other call (of a method in `rate_methods`) a fault drawn from `rate_kinds`
with that probability, decided by (seed, method, photo id, call number) alone, so a run is
reproducible whatever the thread timing; `heal()` ends every fault. `served` counts the faults
sent, by kind.

Ids absent from `photos` are answered with error 1, "Photo not found", on every call. `hold_after`
makes every call after the first N wait until `release()` (to kill a client mid-crawl at a known
point).
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WORDS = ["sunset", "Beach", "dogs", "New York", "été", "Street Art", "macro", "NIKON D80", "bw", "the sea",
         "Flowers", "night", "portrait", "clouds", "Paris", "cat", "snow", "reflection", "Tokyo", "bridge"]
FAULTS = ("500", "503", "slow", "drop", "105", "truncated", "malformed", "html", "empty", "reset", "ok")
BODY_FAULTS = ("truncated", "html", "empty", "reset")  # status 200, but no usable JSON
HTML_PAGE = ("<!DOCTYPE html><html><head><title>Flickr: Oops</title></head><body><h1>Flickr is having a "
             "massage</h1><p>Please try again later.</p></body></html>")
GROUPS = ["Dogs of Flickr", "Sunset Lovers", "Black & White", "Macro Photography", "Street Art Worldwide",
          "Île-de-France", "Night Shots", "Cats!", "Seascapes", "Urban Decay"]


def make_photos(ids: list[str], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Deterministic photo metadata per id: title, HTML description, raw tags, owner, some
    geotags, sets and pools (some photos have none)."""
    rng = random.Random(seed)
    photos = {}
    for pid in ids:
        k = rng.randint(0, 6)
        photos[pid] = {
            "title": f"{rng.choice(WORDS).title()} #{pid}",
            "description": rng.choice(["", f"Taken with a <b>{rng.choice(WORDS)}</b> &amp; friends", "Ünïcødé ☀"]),
            "tags": rng.sample(WORDS, k) + (["geo:lat=48.85"] if rng.random() < 0.1 else []),
            "owner": (f"{rng.randint(10000000, 99999999)}@N0{rng.randint(0, 8)}", f"user{rng.randint(1, 50)}"),
            "location": ({"latitude": round(rng.uniform(-80, 80), 6), "longitude": round(rng.uniform(-170, 170), 6),
                          "locality": rng.choice(["Paris", "Tokyo", ""]), "region": "Somewhere", "country": "Earth"}
                         if rng.random() < 0.4 else None),
            "sets": rng.sample(["Holidays 2008", "Best of", "Family"], rng.randint(0, 2)),
            "pools": rng.sample(GROUPS, rng.randint(0, 3)),
        }
    return photos


def _normalise(tag: str) -> str:
    return "".join(ch for ch in tag.lower() if ch.isalnum() or ch in ":=.")


def info_json(pid: str, p: dict[str, Any]) -> dict[str, Any]:
    nsid, username = p["owner"]
    photo: dict[str, Any] = {
        "id": pid, "secret": "1e92283336", "server": "3003", "farm": 4, "dateuploaded": "1218155520",
        "isfavorite": 0, "license": "0", "safety_level": "0", "rotation": 0,
        "owner": {"nsid": nsid, "username": username, "realname": "", "location": "", "iconserver": "0",
                  "iconfarm": 0, "path_alias": None},
        "title": {"_content": p["title"]},
        "description": {"_content": p["description"]},
        "visibility": {"ispublic": 1, "isfriend": 0, "isfamily": 0},
        "dates": {"posted": "1218155520", "taken": "2008-08-07 17:32:00", "takengranularity": 0,
                  "takenunknown": "0", "lastupdate": "1304541093"},
        "views": "152", "editability": {"cancomment": 0, "canaddmeta": 0},
        "comments": {"_content": "0"}, "notes": {"note": []}, "people": {"haspeople": 0},
        "tags": {"tag": [{"id": f"{nsid}-{pid}-{i}", "author": nsid, "authorname": username, "raw": t,
                          "_content": _normalise(t), "machine_tag": int(":" in t and "=" in t)}
                         for i, t in enumerate(p["tags"])]},
        "urls": {"url": [{"type": "photopage", "_content": f"https://www.flickr.com/photos/{nsid}/{pid}/"}]},
        "media": "photo",
    }
    loc = p["location"]
    if loc:
        photo["location"] = {
            "latitude": loc["latitude"], "longitude": loc["longitude"], "accuracy": "16", "context": "0",
            "locality": {"_content": loc["locality"]}, "region": {"_content": loc["region"]},
            "country": {"_content": loc["country"]}}
    return {"photo": photo, "stat": "ok"}


def contexts_json(p: dict[str, Any]) -> dict[str, Any]:
    rsp: dict[str, Any] = {"stat": "ok"}
    if p["sets"]:
        rsp["set"] = [{"id": f"7215762{i:010d}", "title": t, "primary": "1", "secret": "x", "server": "1",
                       "farm": 1, "view_count": 3, "comment_count": 0, "count_photo": 9, "count_video": 0}
                      for i, t in enumerate(p["sets"])]
    if p["pools"]:
        rsp["pool"] = [{"id": f"{30000 + i}@N2{i}", "title": t, "url": f"/groups/{30000 + i}/pool/",
                        "iconserver": "1", "iconfarm": 1, "members": "120", "pool_count": "5000"}
                       for i, t in enumerate(p["pools"])]
    return rsp


def fail_json(code: int, message: str) -> dict[str, Any]:
    return {"stat": "fail", "code": code, "message": message}


@dataclass
class FakeFlickr:
    """The server's data, fault script and counters; `start()` serves it on a random port."""

    photos: dict[str, dict[str, Any]]
    api_key: str = "fake-key"
    faults: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    slow_s: float = 1.0
    hold_after: int | None = None
    rate: float = 0.0
    rate_kinds: tuple[str, ...] = ("truncated",)
    rate_methods: tuple[str, ...] = ("getInfo", "getAllContexts")
    seed: int = 0
    served: Counter = field(default_factory=Counter)  # fault kind -> times sent
    calls: Counter = field(default_factory=Counter)  # (method, photo_id) -> calls received
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each call
    bodies: list[str] = field(default_factory=list)  # raw request bodies and query strings
    held: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeFlickr:
        kinds = {f for script in self.faults.values() for f in script} | set(self.rate_kinds)
        unknown = {f for f in kinds if f not in FAULTS and not re.fullmatch(r"fail-\d+", f)}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS} and fail-<code>")
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, urlsplit(self.path).query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                fake._handle(self, "&".join(x for x in (urlsplit(self.path).query, body) if x))

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that time out or die leave broken pipes behind

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/services/rest/"

    def release(self) -> None:
        """Let held calls go on and stop holding new ones."""
        self.hold_after = None
        self._release.set()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeFlickr:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def heal(self) -> None:
        """No more faults: scripts and the random rate end (counters are kept)."""
        self.faults = {}
        self.rate = 0.0

    def fault_at(self, method: str, photo_id: str, n: int) -> str | None:
        """The fault of call number `n` (1-based) of `method` for `photo_id`, None for a normal answer."""
        script = self.faults.get((method, photo_id), [])
        if n <= len(script):
            fault = script[n - 1]
        elif self.rate and method in self.rate_methods:
            rng = random.Random(f"{self.seed}/{method}/{photo_id}/{n}")
            fault = rng.choice(self.rate_kinds) if rng.random() < self.rate else None
        else:
            fault = None
        return None if fault == "ok" else fault

    def total(self, method: str | None = None) -> int:
        return sum(n for (m, _), n in self.calls.items() if method is None or m == method)

    # -- request handling ---------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, query: str) -> None:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        method = params.get("method", "").removeprefix("flickr.photos.")
        pid = params.get("photo_id", "")
        with self._lock:
            self.bodies.append(query)
            self.arrivals.append(time.monotonic())
            self.calls[(method, pid)] += 1
            n = self.calls[(method, pid)]
            hold = self.hold_after is not None and len(self.arrivals) > self.hold_after
            fault = self.fault_at(method, pid, n)
            if fault is not None:
                self.served[fault] += 1
        if hold:
            self.held.set()
            self._release.wait(timeout=60)
        if fault == "drop":
            h.close_connection = True
            h.connection.close()
            return
        if fault in ("500", "503"):
            return self._send(h, int(fault), "<html><body>Oops: internal error</body></html>", "text/html")
        if fault == "html":
            return self._send(h, 200, HTML_PAGE, "text/html; charset=utf-8")
        if fault == "empty":
            return self._send(h, 200, "", "application/json; charset=utf-8")
        if fault == "slow":
            time.sleep(self.slow_s)
        auth = h.headers.get("Authorization", "")
        if f'oauth_consumer_key="{self.api_key}"' not in auth:
            rsp = fail_json(100, "Invalid API Key (Key has invalid format)")
        elif params.get("format") != "json":
            rsp = fail_json(111, f'Format "{params.get("format")}" not found')
        elif fault == "105":
            rsp = fail_json(105, "Service currently unavailable")
        elif fault and fault.startswith("fail-"):
            rsp = fail_json(int(fault.removeprefix("fail-")), f"Flickr error {fault.removeprefix('fail-')}")
        elif method not in ("getInfo", "getAllContexts"):
            rsp = fail_json(112, f'Method "{params.get("method")}" not found')
        elif pid not in self.photos:
            rsp = fail_json(1, "Photo not found")
        elif method == "getInfo":
            rsp = info_json(pid, self.photos[pid])
        else:
            rsp = contexts_json(self.photos[pid])
        body = json.dumps(rsp)
        if fault in ("truncated", "malformed"):
            body = body[: len(body) // 2]
        if params.get("nojsoncallback") != "1":
            body = f"jsonFlickrApi({body})"
        if fault == "reset":
            return self._reset_mid_body(h, body)
        self._send(h, 200, body, "application/json; charset=utf-8")

    @staticmethod
    def _reset_mid_body(h: BaseHTTPRequestHandler, body: str) -> None:
        """Announce the whole body, send half of it, then reset the connection (RST, not FIN)."""
        data = body.encode("utf-8")
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            time.sleep(0.02)  # let the client read the headers and the first half
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        h.close_connection = True
        h.connection.close()

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: str, ctype: str) -> None:
        data = body.encode("utf-8")
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout) or was killed
