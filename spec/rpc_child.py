#!/usr/bin/env python3
"""A small JSON-RPC 2.0 server over stdio for spec/jsonrpc_spec.lua.

Framing by argv[1]: "lines" (newline-delimited, MCP's stdio transport) or
"lsp" (Content-Length headers, LSP's base protocol). Methods:
  echo        result: the params
  fail        error -32000 "it failed", data {"why": "asked"}
  shout       a notification "progress" {"n": 1}, then result "done"
  ask         a request of its own (roots/list) to the host; result: the
              response it got (its result or its error)
  batch       one line holding a batch: a notification "progress" {"n": 2}
              and the result "batched"
  stray       a response with an id the host never issued, then result "ok"
  big         result: a string of params.n bytes
  die         exits without answering
  tell        (a notification) answered by a notification "told" (params)
"""
import json
import sys

framing = sys.argv[1] if len(sys.argv) > 1 else "lines"
inp, out = sys.stdin.buffer, sys.stdout.buffer


def read():
    if framing == "lines":
        line = inp.readline()
        return json.loads(line) if line else None
    length = None
    while True:
        h = inp.readline()
        if not h:
            return None
        h = h.strip()
        if not h:
            break
        k, v = h.split(b":", 1)
        if k.strip().lower() == b"content-length":
            length = int(v)
    return json.loads(inp.read(length))


def write(msg):
    body = json.dumps(msg).encode()
    if framing == "lines":
        out.write(body + b"\n")
    else:
        out.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    out.flush()


def result(mid, r):
    write({"jsonrpc": "2.0", "id": mid, "result": r})


def main():
    while True:
        m = read()
        if m is None:
            return
        method, mid, params = m.get("method"), m.get("id"), m.get("params")
        if method == "echo":
            result(mid, params)
        elif method == "fail":
            write({"jsonrpc": "2.0", "id": mid, "error": {
                "code": -32000, "message": "it failed", "data": {"why": "asked"}}})
        elif method == "shout":
            write({"jsonrpc": "2.0", "method": "progress", "params": {"n": 1}})
            result(mid, "done")
        elif method == "ask":
            write({"jsonrpc": "2.0", "id": "q-1", "method": "roots/list",
                   "params": params or {}})
            got = read()
            while got is not None and got.get("id") != "q-1":
                got = read()
            result(mid, got and (got.get("result") if "result" in got
                                 else {"error": got.get("error")}))
        elif method == "batch":
            body = [{"jsonrpc": "2.0", "method": "progress", "params": {"n": 2}},
                    {"jsonrpc": "2.0", "id": mid, "result": "batched"}]
            write(body)
        elif method == "stray":
            result(987654, "nobody asked")
            result(mid, "ok")
        elif method == "big":
            result(mid, "b" * params["n"])
        elif method == "die":
            return
        elif method == "tell":
            write({"jsonrpc": "2.0", "method": "told", "params": params})


main()
