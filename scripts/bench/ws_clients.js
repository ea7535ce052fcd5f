// The client side of scripts/bench/websocket.lua: N WebSocket connections
// speaking the NATS client protocol (Node 20's WebSocket, run with
// --experimental-websocket; raw protocol lines, no client library, so the
// client's own cost stays small). Each subscribes to c.<i> and to "all";
// every MSG's payload is the publisher's wall clock in microseconds, so
// each delivery's latency is measured here.
//   node --experimental-websocket ws_clients.js PORT N
// Prints "ready" once every connection has its PONG, then on stdin's
// "report" one JSON line {conns, msgs, p50_us, p99_us, max_us}.
const [port, n] = [process.argv[2], Number(process.argv[3])];
const lat = [];
let ready = 0, open = 0;

function now_us() { return (performance.timeOrigin + performance.now()) * 1000; }

function one(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.binaryType = "arraybuffer";
    let buf = "", pong = false;
    ws.onopen = () => {
      open++;
      ws.send(new TextEncoder().encode(`CONNECT {"verbose":false}\r\nSUB c.${i} 1\r\nSUB all 2\r\nPING\r\n`));
    };
    ws.onmessage = (e) => {
      buf += Buffer.from(e.data).toString("latin1");
      for (;;) {
        const eol = buf.indexOf("\r\n");
        if (eol < 0) return;
        const line = buf.slice(0, eol);
        if (line.startsWith("MSG ")) {
          const size = Number(line.slice(line.lastIndexOf(" ") + 1));
          if (buf.length < eol + 2 + size + 2) return;
          const t = Number(buf.slice(eol + 2, eol + 2 + size));
          lat.push(now_us() - t);
          buf = buf.slice(eol + 2 + size + 2);
          continue;
        }
        buf = buf.slice(eol + 2);
        if (line === "PING") ws.send(new TextEncoder().encode("PONG\r\n"));
        if (line === "PONG" && !pong) { pong = true; ready++; resolve(ws); }
      }
    };
    ws.onerror = (e) => reject(new Error(`connection ${i}: ${e.message || "error"}`));
  });
}

async function main() {
  const conns = [];
  for (let i = 0; i < n; i += 250) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 250); j++) batch.push(one(j));
    conns.push(...(await Promise.all(batch)));
  }
  console.log("ready");
  process.stdin.on("data", (d) => {
    if (!String(d).includes("report")) return;
    lat.sort((a, b) => a - b);
    const q = (p) => Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] || 0);
    console.log(JSON.stringify({ conns: ready, msgs: lat.length, p50_us: q(0.5), p99_us: q(0.99), max_us: q(1) }));
    for (const ws of conns) ws.close();
    setTimeout(() => process.exit(0), 500);
  });
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
