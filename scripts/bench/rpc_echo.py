#!/usr/bin/env python3
"""The child of scripts/bench/mcp.lua: one echo logic, two wire formats.

argv[1] "lines": msrt's JSON lines: {"subject", "reply", "data"} in,
  {"subject": <reply>, "data": <data>} out.
argv[1] "jsonrpc": JSON-RPC 2.0 lines: {"jsonrpc", "id", "method",
  "params"} in, {"jsonrpc": "2.0", "id": <id>, "result": <params>} out.
Each message is parsed and its answer written as JSON, one line, flushed
when no more input is waiting (the same for both).
"""
import json
import sys

rpc = len(sys.argv) > 1 and sys.argv[1] == "jsonrpc"
out = sys.stdout
for line in sys.stdin:
    m = json.loads(line)
    if rpc:
        out.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": m.get("params")}) + "\n")
    else:
        out.write(json.dumps({"subject": m["reply"], "data": m.get("data")}) + "\n")
    out.flush()
