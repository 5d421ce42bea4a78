#!/usr/bin/env python3
"""A small real HTTP service for trying kaizen on: its tunables live in YAML in its own git
repository, it re-reads them when the file changes, and its latency depends on them.

    python3 service.py --repo /path/to/repo --listen 127.0.0.1:8080

GET /work    does one unit of work; takes about 20 + 16000 / cache_mb ms (±10%), and a bit more
             when `workers` is too low for the load (queueing).
GET /health  {"latency_ms": p50 of the last 30 s, "p99_ms": ..., "requests": n,
              "errors": {"rate": ...}, "tunables": {...}, "config_mtime": ...}

Only the standard library: the YAML is the flat `key: value  # comment` kind kaizen's
`config_set` edits (a malformed file is reported and the last good tunables are kept).
"""

import argparse
import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULTS = {"cache_mb": 64.0, "workers": 4.0}
WINDOW_S = 30.0


def parse_flat_yaml(text):
    """`key: number` lines (comments and blank lines ignored) -> dict; raises ValueError."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if ":" not in line:
            raise ValueError(f"line {n}: expected `key: value`")
        key, value = (p.strip() for p in line.split(":", 1))
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


class Tunables:
    """The config file, re-read when its mtime changes (checked at most every 0.5 s)."""

    def __init__(self, path):
        self.path = path
        self.values = dict(DEFAULTS)
        self.mtime = None
        self.checked = 0.0
        self.lock = threading.Lock()
        self.reload()

    def reload(self):
        try:
            st = os.stat(self.path)
        except OSError as e:
            print(f"service: cannot stat {self.path}: {e}", file=sys.stderr, flush=True)
            return
        if st.st_mtime == self.mtime:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                parsed = parse_flat_yaml(f.read())
        except (OSError, ValueError, UnicodeDecodeError) as e:
            print(f"service: keeping the last good tunables: {self.path}: {e}", file=sys.stderr, flush=True)
            self.mtime = st.st_mtime
            return
        values = dict(DEFAULTS)
        values.update({k: v for k, v in parsed.items() if isinstance(v, float) and v > 0})
        self.values, self.mtime = values, st.st_mtime
        print(f"service: tunables {values}", file=sys.stderr, flush=True)

    def get(self):
        with self.lock:
            now = time.monotonic()
            if now - self.checked >= 0.5:
                self.checked = now
                self.reload()
            return dict(self.values), self.mtime


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.samples = []  # (monotonic time, latency ms, ok)
        self.in_flight = 0

    def add(self, ms, ok):
        with self.lock:
            now = time.monotonic()
            self.samples.append((now, ms, ok))
            cut = now - WINDOW_S
            while self.samples and self.samples[0][0] < cut:
                self.samples.pop(0)

    def summary(self):
        with self.lock:
            lat = sorted(s[1] for s in self.samples)
            errors = sum(1 for s in self.samples if not s[2])
            n = len(lat)
        if n == 0:
            return None
        pick = lambda q: lat[min(n - 1, int(q * n))]
        return {"latency_ms": round(pick(0.5), 1), "p99_ms": round(pick(0.99), 1), "requests": n,
                "errors": {"rate": round(errors / n, 4)}}


def make_handler(tunables, stats):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/work"):
                values, _ = tunables.get()
                with stats.lock:
                    stats.in_flight += 1
                    queued = max(0, stats.in_flight - values["workers"])
                try:
                    ms = (20.0 + 16000.0 / values["cache_mb"]) * random.uniform(0.9, 1.1)
                    ms += 15.0 * queued
                    time.sleep(ms / 1000.0)
                    stats.add(ms, True)
                    self.reply(200, {"ms": round(ms, 1)})
                finally:
                    with stats.lock:
                        stats.in_flight -= 1
            elif self.path.startswith("/health"):
                values, mtime = tunables.get()
                s = stats.summary()
                if s is None:
                    # No traffic in the window: no value (kaizen records a gap, never a zero).
                    self.reply(503, {"error": "no requests in the last 30 s", "tunables": values})
                    return
                s.update({"tunables": values, "config_mtime": mtime})
                self.reply(200, s)
            else:
                self.reply(404, {"error": "try /work or /health"})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, help="the git repository holding config/app.yaml")
    ap.add_argument("--config", default="config/app.yaml", help="tunables file inside --repo")
    ap.add_argument("--listen", default="127.0.0.1:8080")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    tunables = Tunables(os.path.join(args.repo, args.config))
    server = ThreadingHTTPServer((host, int(port)), make_handler(tunables, Stats()))
    server.daemon_threads = True
    print(f"service: listening on http://{host}:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
