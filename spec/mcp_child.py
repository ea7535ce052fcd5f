#!/usr/bin/env python3
"""A small MCP server over stdio, without any SDK, for spec/mcp_spec.lua.

JSON-RPC 2.0, one message a line (MCP's stdio transport). Tools:
  echo    {text}: a text content "echo: <text>"
  slow    {steps}: a progress notification each 100 ms (when the call
          asked for progress), then "done"; a notifications/cancelled for
          it ends it early and is told back as a notifications/message
          {"level": "info", "data": {"cancelled": <requestId>}}
  grow    adds the tool "extra" and sends notifications/tools/list_changed
Argv[1], when given, names a file where each method received is appended
(one a line), so a spec can see what the server was sent. Argv[2]
"hostile" adds tools whose names are subject wildcards or break tokens.
"""
import json
import sys
import threading
import time

out_lock = threading.Lock()
cancelled = set()
log = open(sys.argv[1], "a", buffering=1) if len(sys.argv) > 1 else None
tools = [
    {"name": "echo", "description": "Echo the text",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                     "required": ["text"], "additionalProperties": False}},
    {"name": "slow", "description": "Take steps of 100 ms",
     "inputSchema": {"type": "object", "properties": {"steps": {"type": "integer", "minimum": 1}},
                     "required": ["steps"]}},
    {"name": "grow", "description": "Offer one more tool",
     "inputSchema": {"type": "object"}},
]

if len(sys.argv) > 2 and sys.argv[2] == "hostile":
    for bad in (">", "*", "a.*", "a..b", ".a", "a b", "x" * 200):
        tools.append({"name": bad, "inputSchema": {"type": "object"}})


def send(msg):
    with out_lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def result(mid, res):
    send({"jsonrpc": "2.0", "id": mid, "result": res})


def text(t, error=False):
    r = {"content": [{"type": "text", "text": t}]}
    if error:
        r["isError"] = True
    return r


def slow(mid, args, meta):
    token = meta.get("progressToken")
    steps = args["steps"]
    for i in range(steps):
        if mid in cancelled:
            send({"jsonrpc": "2.0", "method": "notifications/message",
                  "params": {"level": "info", "data": {"cancelled": mid}}})
            return  # MCP: no response to a cancelled request
        time.sleep(0.1)
        if token is not None:
            send({"jsonrpc": "2.0", "method": "notifications/progress",
                  "params": {"progressToken": token, "progress": i + 1, "total": steps}})
    result(mid, text("done"))


def call_tool(mid, p):
    name, args = p.get("name"), p.get("arguments") or {}
    if name == "echo":
        return result(mid, text("echo: " + args["text"]))
    if name == "slow":
        return threading.Thread(target=slow, args=(mid, args, p.get("_meta") or {}), daemon=True).start()
    if name == "grow":
        if not any(t["name"] == "extra" for t in tools):
            tools.append({"name": "extra", "inputSchema": {"type": "object"}})
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        return result(mid, text("grown"))
    if name == "extra":
        return result(mid, text("extra", error=True))
    send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "unknown tool " + str(name)}})


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        m = json.loads(line)
        method, mid, p = m.get("method"), m.get("id"), m.get("params") or {}
        if log and method:
            log.write(method + "\n")
        if method == "initialize":
            result(mid, {"protocolVersion": p.get("protocolVersion", "2025-06-18"),
                         "capabilities": {"tools": {"listChanged": True}},
                         "serverInfo": {"name": "mcp_child", "version": "1"}})
        elif method == "ping":
            result(mid, {})
        elif method == "tools/list":
            result(mid, {"tools": tools})
        elif method == "tools/call":
            call_tool(mid, p)
        elif method == "notifications/cancelled":
            cancelled.add(p.get("requestId"))
        elif mid is not None and method:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "method not found"}})


main()
