// A client nobody here wrote for spec/mcp_http_spec.lua: the MCP
// TypeScript SDK's StreamableHTTPClientTransport (@modelcontextprotocol/sdk,
// pinned in package-lock.json) against `msrt-lua mcp serve --http`, plus
// raw fetches for what the SDK never sends (a hostile Origin, no session,
// a connection dropped mid-call). argv[2]: the URL; argv[3]: the log of
// methods spec/mcp_child.py received. Prints one JSON line.
import { readFileSync } from "node:fs";
import http from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = process.argv[2];
// until the MCP child has received n of method (bounded: 20 s)
async function received(method, n) {
  for (let i = 0; i < 2000; i++) {
    if (readFileSync(process.argv[3], "utf8").split("\n").filter((l) => l === method).length >= n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the MCP child never got " + method + " " + n);
}
const calls = (n) => received("tools/call", n);
const out = {};
const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "spec", version: "1" });
await client.connect(transport);
out.session = transport.sessionId;
out.tools = (await client.listTools()).tools.map((t) => t.name);
out.upper = (await client.callTool({ name: "upper", arguments: { text: "hello" } })).structuredContent;
// progress from the MCP child behind a server tool, carried on the POST's stream
const progress = [];
await client.callTool({ name: "slow", arguments: { steps: 3 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
out.progress = progress;
// the SDK's own cancellation: an aborted call sends notifications/cancelled
const ac = new AbortController();
const slow = client.callTool({ name: "slow", arguments: { steps: 300 } }, undefined, { signal: ac.signal });
await calls(2);
ac.abort();
out.aborted = await slow.then(() => "answered", (e) => e.name || String(e));
const post = (body, headers, signal) => fetch(url, { method: "POST", body: JSON.stringify(body), signal,
  headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers } });
const list = { jsonrpc: "2.0", id: 9, method: "tools/list" };
out.evil_origin = (await post(list, { "mcp-session-id": out.session, origin: "http://evil.example" })).status;
out.no_session = (await post(list, {})).status;
out.unknown_session = (await post(list, { "mcp-session-id": "nope" })).status;
out.get = (await fetch(url)).status;
// a connection dropped while its call runs: the call is abandoned
const drop = new AbortController();
const dropped = post({ jsonrpc: "2.0", id: 10, method: "tools/call", params: { name: "slow", arguments: { steps: 300 } } },
  { "mcp-session-id": out.session }, drop.signal);
await calls(3);
drop.abort();
await dropped.catch(() => {});
await received("notifications/cancelled", 2); // before the DELETE below could cancel it
// a body over the limit (16 MiB) is refused from its Content-Length alone
out.too_big = await new Promise((resolve, reject) => {
  const req = http.request(url, { method: "POST", headers: { "content-length": String(17 * 1024 * 1024),
    "content-type": "application/json", "mcp-session-id": out.session } }, (res) => { res.resume(); resolve(res.statusCode); });
  req.on("error", reject);
  req.flushHeaders();
});
await transport.terminateSession();
out.after_delete = (await post(list, { "mcp-session-id": out.session })).status;
await client.close();
console.log(JSON.stringify(out));
