#!/usr/bin/env python3
"""Aggregate decode throughput of `hearth serve` under concurrent clients.

For each number of clients C (default 1 2 4 8) it starts the server twice,
with --parallel C and with --parallel 1 (the others queue), on 127.0.0.1,
and has C clients each send --requests greedy completions of --tokens
tokens at once. Reports total generated tokens / wall time. Standard library
only; every request goes to 127.0.0.1 and the run is bounded.

    scripts/serve-bench.py MODEL [--bin target/release/hearth] [--clients 1 2 4 8]
"""

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request

PROMPTS = [
    "Once upon a time, in a small village,",
    "The history of the printing press",
    "Here is a recipe for bread:",
    "The three laws of motion are",
    "A guide to the planets of the solar system:",
    "In the year 2050, cities",
    "The most important skill for a programmer is",
    "Dear diary, today I",
]


def start(bin_, model, parallel, threads):
    args = [bin_, "serve", model, "--port", "0", "--parallel", str(parallel), "--ctx-size", "1024"]
    if threads:
        args += ["--threads", str(threads)]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    addr = None
    while addr is None:
        line = p.stderr.readline()
        if not line:
            raise SystemExit("the server exited")
        m = re.search(r"listening on http://(\S+)", line)
        if m:
            addr = m.group(1)
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://{addr}/health", timeout=5)
            return p, addr
        except Exception:
            time.sleep(0.2)
    p.kill()
    raise SystemExit("the model did not load")


def completion(addr, prompt, tokens):
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0}).encode()
    req = urllib.request.Request(f"http://{addr}/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["usage"]["completion_tokens"]


def run(addr, clients, requests, tokens):
    total = [0] * clients
    # Warm-up: one request, so one-time allocations are not timed.
    completion(addr, PROMPTS[0], 4)

    def client(i):
        for r in range(requests):
            total[i] += completion(addr, PROMPTS[(i + r) % len(PROMPTS)], tokens)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    return sum(total), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--bin", default="target/release/hearth")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per request")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    print("| clients | --parallel | tokens | seconds | tokens/s |")
    print("|--:|--:|--:|--:|--:|")
    for c in a.clients:
        for parallel in sorted({c, 1}, reverse=True):
            p, addr = start(a.bin, a.model, parallel, a.threads)
            try:
                n, wall = run(addr, c, a.requests, a.tokens)
            finally:
                p.terminate()
                p.wait(timeout=60)
            print(f"| {c} | {parallel} | {n} | {wall:.2f} | {n / wall:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
