// A client nobody here wrote: the `nats` npm package (Node.js) against
// msrt's NATS listener (spec/nats_listen_spec.lua runs it), or with a third
// argument `ws` the `nats.ws` package over WebSocket (spec/web_ws_spec.lua;
// Node 20 needs --experimental-websocket for the WebSocket nats.ws uses).
//   node node_client.js PORT basic   wildcards, queue groups, request/reply
//                                    to an msrt actor and to a process,
//                                    headers, no responders, Lua values
//   node node_client.js PORT auth    credentials, a denied publish and
//                                    subscription, a wrong password
//   node node_client.js PORT deny_wildcard   user eve/pw, allowed a.> but
//                                    denied a.secret: a.> never gets a.secret
//   node node_client.js PORT no_echo a noEcho connection's own publishes
//                                    skip its subscriptions and its turn in
//                                    a queue group
// Prints one JSON object per check: {"check": name, "ok": bool, ...}, and
// "done" last; exits 1 on an unexpected exception.
const [port, scenario, transport] = process.argv.slice(2);
// nats.ws is an ES module only: imported; both packages share one API
let connect, StringCodec, headers, ErrorCode, sc;
const servers = transport === "ws" ? `ws://127.0.0.1:${port}` : `127.0.0.1:${port}`;

function report(check, ok, detail) {
  console.log(JSON.stringify({ check, ok: !!ok, detail }));
}

async function collect(sub, n, ms) {
  const got = [];
  const timer = setTimeout(() => sub.unsubscribe(), ms);
  for await (const m of sub) {
    got.push(m);
    if (got.length >= n) break;
  }
  clearTimeout(timer);
  return got;
}

async function basic() {
  const nc = await connect({ servers, name: "node-basic" });
  report("connect", true, nc.info.server_name);

  // wildcards
  const star = nc.subscribe("t.*"), full = nc.subscribe("t.>");
  const pStar = collect(star, 1, 2000), pFull = collect(full, 2, 2000);
  await nc.flush();
  nc.publish("t.a", sc.encode("one"));
  nc.publish("t.a.b", sc.encode("two"));
  const [gs, gf] = await Promise.all([pStar, pFull]);
  report("star", gs.length === 1 && gs[0].subject === "t.a", gs.map((m) => m.subject));
  report("full", gf.length === 2, gf.map((m) => m.subject));
  star.unsubscribe();

  // a queue group: each message to one member
  let a = 0, b = 0;
  const qa = nc.subscribe("q.work", { queue: "workers", callback: () => a++ });
  const qb = nc.subscribe("q.work", { queue: "workers", callback: () => b++ });
  await nc.flush();
  for (let i = 0; i < 20; i++) nc.publish("q.work", sc.encode(String(i)));
  await nc.flush();
  await new Promise((r) => setTimeout(r, 200));
  report("queue", a + b === 20, { a, b });
  qa.unsubscribe(), qb.unsubscribe();

  // request/reply to an msrt actor and to a supervised process
  const r1 = await nc.request("svc.upper", sc.encode("hello"), { timeout: 5000 });
  report("actor_reply", sc.decode(r1.data) === "HELLO", sc.decode(r1.data));
  const r2 = await nc.request("svc.proc", sc.encode("ping"), { timeout: 5000 });
  report("process_reply", sc.decode(r2.data).includes("ping"), sc.decode(r2.data));

  // headers through the router and back
  const h = headers();
  h.set("X-Trace", "42");
  const hs = nc.subscribe("h.echo");
  const ph = collect(hs, 1, 2000);
  await nc.flush();
  nc.publish("h.echo", sc.encode("with headers"), { headers: h });
  const [hm] = await ph;
  report("headers", hm && hm.headers && hm.headers.get("X-Trace") === "42",
         hm && hm.headers && hm.headers.get("X-Trace"));

  // no responders: the 503 at once
  try {
    await nc.request("nobody.home", sc.encode("?"), { timeout: 3000 });
    report("no_responders", false, "answered");
  } catch (e) {
    report("no_responders", e.code === ErrorCode.NoResponders, e.code);
  }

  // a payload of many frames' worth (over WebSocket: received in pieces
  // smaller than one frame, sent in frames of at most 64 KiB) arrives whole
  const bytes = new Uint8Array(200 * 1024).map((_, i) => i % 251);
  const pb = collect(nc.subscribe("big.x"), 1, 5000);
  await nc.flush();
  nc.publish("big.x", bytes);
  const [bm] = await pb;
  report("big", bm && bm.data.length === bytes.length &&
         bm.data.every((b, i) => b === bytes[i]), bm && bm.data.length);

  // a Lua table reaches the client as JSON; a Lua string as its bytes
  const lt = nc.subscribe("from.lua.*");
  const pl = collect(lt, 2, 3000);
  await nc.flush();
  nc.publish("ask.lua", sc.encode("go"));
  const lm = await pl;
  const texts = lm.map((m) => sc.decode(m.data)).sort();
  report("lua_values", texts.length === 2 && texts[0] === "plain bytes" &&
         JSON.parse(texts[1]).n === 1, texts);

  await nc.drain();
  report("done", true);
}

async function auth() {
  try {
    await connect({ servers, user: "ann", pass: "wrong", reconnect: false });
    report("bad_password", false, "connected");
  } catch (e) {
    report("bad_password", e.code === ErrorCode.AuthorizationViolation, e.code);
  }
  const nc = await connect({ servers, user: "ann", pass: "pw", reconnect: false });
  report("credentials", true);
  const errors = [];
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error") errors.push(String(s.data));
    }
  })();
  const ok = nc.subscribe("news.>");
  const pok = collect(ok, 1, 2000);
  await nc.flush();
  nc.publish("news.today", sc.encode("allowed"));
  const got = await pok;
  report("allowed", got.length === 1, got.length);
  nc.publish("admin.reset", sc.encode("denied"));
  await nc.flush();
  // nats.js reports a permissions -ERR as a status event with its code
  const deadline = Date.now() + 3000;
  while (!errors.includes(ErrorCode.PermissionsViolation) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  report("denied_publish", errors.includes(ErrorCode.PermissionsViolation), errors);
  await nc.close();
  report("done", true);
}

async function denyWildcard() {
  const nc = await connect({ servers, user: "eve", pass: "pw", reconnect: false });
  const sub = nc.subscribe("a.>");
  const got = collect(sub, 1, 3000);
  await nc.flush();
  // one subscription's messages arrive in order: a.public arriving first
  // proves a.secret was filtered, not late
  nc.publish("a.secret", sc.encode("hidden"));
  nc.publish("a.public", sc.encode("shown"));
  const [m] = await got;
  report("deny_wildcard", m && m.subject === "a.public", m && m.subject);
  await nc.close();
  report("done", true);
}

async function noEcho() {
  const quiet = await connect({ servers, noEcho: true, reconnect: false });
  const other = await connect({ servers, reconnect: false });
  const got = collect(quiet.subscribe("e.x"), 1, 3000);
  let q = 0, o = 0;
  quiet.subscribe("e.q", { queue: "g", callback: () => q++ });
  other.subscribe("e.q", { queue: "g", callback: () => o++ });
  await quiet.flush();
  await other.flush();
  // quiet's PONG comes after whatever its own publish was handed
  quiet.publish("e.x", sc.encode("own"));
  for (let i = 0; i < 10; i++) quiet.publish("e.q", sc.encode(String(i)));
  await quiet.flush();
  other.publish("e.x", sc.encode("other"));
  const [m] = await got;
  report("no_echo", m && sc.decode(m.data) === "other", m && sc.decode(m.data));
  await other.flush(); // the queue's deliveries to other came before this PONG
  report("no_echo_queue", q === 0 && o === 10, { q, o });
  await quiet.close();
  await other.close();
  report("done", true);
}

const scenarios = { basic, auth, deny_wildcard: denyWildcard, no_echo: noEcho };

(async () => {
  ({ connect, StringCodec, headers, ErrorCode } = transport === "ws" ? await import("nats.ws") : require("nats"));
  sc = StringCodec();
  await scenarios[scenario]();
})().catch((e) => {
  report("exception", false, String(e && e.stack || e));
  process.exit(1);
});
