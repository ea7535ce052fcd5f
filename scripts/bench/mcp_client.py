#!/usr/bin/env python3
"""Tool calls per second through `msrt-lua mcp serve` against the same MCP
server called directly (docs/performance.md).

  python3 scripts/bench/mcp_client.py [--msrt build/msrt-lua] [--calls N]
                                      [--runs N]

An SDK-free MCP client over stdio: initialize, then --calls tools/call of
the echo tool of spec/mcp_child.py, 1 and 32 in flight, against
  direct  python3 spec/mcp_child.py
  served  msrt-lua mcp serve POLICY, POLICY offering that server's echo
          tool (an msrt.mcp.server child: client -> serve -> child and back)
Prints the machine, the command and the medians of --runs runs (calls/s).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER = [sys.executable, os.path.join(ROOT, "spec", "mcp_child.py")]


class Session:
    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, bufsize=0)
        self.next = 0
        self.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                 "clientInfo": {"name": "bench", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, msg):
        self.p.stdin.write((json.dumps(msg) + "\n").encode())

    def request(self, method, params):
        self.next += 1
        self.send({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params})

    def answer(self):
        while True:
            m = json.loads(self.p.stdout.readline())
            if "id" in m:
                if "error" in m:
                    raise RuntimeError(m["error"])
                return m["result"]

    def call(self, method, params):
        self.request(method, params)
        return self.answer()

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def calls_per_s(s, n, width):
    args = {"name": "echo", "arguments": {"text": "x" * 64}}
    t0 = time.monotonic()
    sent = 0
    for _ in range(min(width, n)):
        s.request("tools/call", args)
        sent += 1
    for _ in range(n):
        r = s.answer()
        assert r["content"][0]["text"].startswith("echo: "), r
        if sent < n:
            s.request("tools/call", args)
            sent += 1
    return n / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--msrt", default=os.path.join(ROOT, "build", "msrt-lua"))
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("return { name = 'bench', servers = { { name = 'child', cmd = %s } },\n"
                "  tools = { { name = 'echo', server = 'child', tool = 'echo' } } }\n"
                % ("{ " + ", ".join(json.dumps(a) for a in SERVER) + " }"))
        policy = f.name
    print("machine: %s, %d cpus" % (platform.processor() or platform.machine(), os.cpu_count()))
    print("command: python3 scripts/bench/mcp_client.py " + " ".join(sys.argv[1:]))
    os.environ["MSRT_LOG_LEVEL"] = "warn"
    cmds = {"direct": SERVER, "served": [o.msrt, "mcp", "serve", policy]}
    try:
        for width in (1, 32):
            got = {}
            for name, cmd in cmds.items():
                rates = []
                for _ in range(o.runs):
                    s = Session(cmd)
                    rates.append(calls_per_s(s, o.calls, width))
                    s.close()
                got[name] = statistics.median(rates)
            print("%2d in flight, %d calls: direct %.0f calls/s, through msrt-lua mcp serve %.0f calls/s (%.2f)"
                  % (width, o.calls, got["direct"], got["served"], got["served"] / got["direct"]))
    finally:
        os.unlink(policy)


main()
