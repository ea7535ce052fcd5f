#!/usr/bin/env python3
"""py_reviewer: a review agent for Python files that is an MCP tool server.

It speaks the Model Context Protocol over stdio without any SDK: JSON-RPC
2.0, one message a line (msrt.mcp.server supervises it). It answers
initialize, ping and tools/list, and offers one tool:
  review {id, path} -> structuredContent {id, path, agent, pid, ms,
          findings: [{line, severity, tool, message}]}
          (and the same as a text content, for clients that read text)
Findings: a syntax error (error), and what the compiler warns about
(SyntaxWarning and the like: warning), both from compile() with every
warning shown.
REVIEW_CHAOS=P: before each call, exit abruptly with probability P.
REVIEW_HANG=P: before each call, hang with probability P (pings go
unanswered: for the supervisor's liveness probe to find).
"""
import json
import os
import random
import sys
import time
import warnings

NAME = os.environ.get("REVIEWER_NAME", "py")
CHAOS = float(os.environ.get("REVIEW_CHAOS") or 0)
HANG = float(os.environ.get("REVIEW_HANG") or 0)
PID = os.getpid()

TOOL = {
    "name": "review",
    "description": "Review one Python file: syntax errors and compiler warnings",
    "inputSchema": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "path": {"type": "string"}},
        "required": ["id", "path"],
    },
}


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def review(path):
    findings = []
    with open(path, "rb") as f:
        source = f.read()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as e:
            findings.append({"line": e.lineno or 1, "severity": "error", "tool": "python3",
                             "message": e.msg})
    for w in caught:
        findings.append({"line": w.lineno or 1, "severity": "warning", "tool": "python3",
                         "message": "%s: %s" % (w.category.__name__, w.message)})
    return findings


def call(mid, params):
    if params.get("name") != "review":
        return send({"jsonrpc": "2.0", "id": mid,
                     "error": {"code": -32602, "message": "Unknown tool: %s" % params.get("name")}})
    if CHAOS and random.random() < CHAOS:
        sys.stderr.write("[%s] chaos: exiting\n" % NAME)
        os._exit(3)
    if HANG and random.random() < HANG:
        sys.stderr.write("[%s] chaos: hanging\n" % NAME)
        while True:
            time.sleep(3600)
    args = params.get("arguments") or {}
    start = time.monotonic()
    try:
        findings = review(args["path"])
    except OSError as e:
        return send({"jsonrpc": "2.0", "id": mid, "result": {
            "content": [{"type": "text", "text": "cannot read %s: %s" % (args["path"], e.strerror)}],
            "isError": True}})
    out = {"id": args["id"], "path": args["path"], "agent": NAME, "pid": PID,
           "ms": round((time.monotonic() - start) * 1000, 3), "findings": findings}
    send({"jsonrpc": "2.0", "id": mid, "result": {
        "content": [{"type": "text", "text": json.dumps(out)}], "structuredContent": out}})


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        m = json.loads(line)
        method, mid, params = m.get("method"), m.get("id"), m.get("params") or {}
        if mid is None:
            continue  # notifications: initialized, cancelled (calls here are short)
        if method == "initialize":
            send({"jsonrpc": "2.0", "id": mid, "result": {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "py_reviewer", "version": "1"}}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": mid, "result": {}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [TOOL]}})
        elif method == "tools/call":
            call(mid, params)
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})


main()
