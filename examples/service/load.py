#!/usr/bin/env python3
"""A load generator for service.py: N client threads calling GET /work in a loop, each pausing
--think seconds between calls. Prints one line of throughput and latency every --report s.

    python3 load.py --url http://127.0.0.1:8080/work --clients 4
"""

import argparse
import sys
import threading
import time
import urllib.request


def client(url, think, stop, out, lock):
    while not stop.is_set():
        t0 = time.monotonic()
        ok = True
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                r.read()
        except Exception:  # noqa: BLE001 - a failed call is counted, the load goes on
            ok = False
        ms = (time.monotonic() - t0) * 1000.0
        with lock:
            out.append((ms, ok))
        stop.wait(think)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080/work")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--think", type=float, default=0.05, help="seconds between a client's calls")
    ap.add_argument("--report", type=float, default=30.0, help="seconds between report lines")
    ap.add_argument("--duration", type=float, default=0.0, help="stop after this many s (0: never)")
    args = ap.parse_args()
    stop, lock, out = threading.Event(), threading.Lock(), []
    threads = [threading.Thread(target=client, args=(args.url, args.think, stop, out, lock), daemon=True)
               for _ in range(args.clients)]
    for t in threads:
        t.start()
    start = time.monotonic()
    try:
        while not stop.is_set():
            stop.wait(args.report)
            with lock:
                batch, out[:] = list(out), []
            if batch:
                lat = sorted(b[0] for b in batch)
                fails = sum(1 for b in batch if not b[1])
                print(f"load: {len(batch) / args.report:.1f} req/s, p50 {lat[len(lat) // 2]:.0f} ms, "
                      f"{fails} failed", file=sys.stderr, flush=True)
            if args.duration and time.monotonic() - start >= args.duration:
                stop.set()
    except KeyboardInterrupt:
        stop.set()


if __name__ == "__main__":
    main()
