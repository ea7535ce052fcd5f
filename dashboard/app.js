// The msrt dashboard: live over the host's WebSocket with nats.ws
// (README "HTTP endpoints and the dashboard"). It subscribes to msrt.stats
// (one snapshot a second: lua/msrt/dashboard.lua) and msrt.> (the
// runtime's events), and asks msrt.ctl.restart/stop to act on a child.
import { connect, StringCodec, JSONCodec } from "/vendor/nats.ws/nats.js";

const sc = StringCodec(), jc = JSONCodec();
const $ = (id) => document.getElementById(id);
const POINTS = 120;                 // two minutes of seconds
const list = (v) => (Array.isArray(v) ? v : v ? Object.values(v) : []);
let nc, last, charts = {}, series = { t: [], classes: {}, outcomes: {} };

function fmtUptime(ms) {
  if (ms == null) return "-";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}
const fmtBytes = (b) => (b == null ? "-" : b > 1 << 20 ? (b / 1048576).toFixed(1) + " MiB" : (b / 1024).toFixed(0) + " KiB");
const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text ?? "-"; if (cls) td.className = cls; return td; };

async function ctl(verb, path) {
  $("ctl-msg").textContent = `${verb} ${path}…`;
  try {
    const r = await nc.request("msrt.ctl." + verb, sc.encode(path), { timeout: 15000 });
    $("ctl-msg").textContent = sc.decode(r.data);
  } catch (e) {
    $("ctl-msg").textContent = `${verb} ${path}: ${e.code || e.message} (not permitted, or no answer)`;
  }
}

// A root supervisor gets a row of its own; a nested one is its child row.
function treeRows(tbody, node, depth, nested) {
  if (!nested) {
    const tr = document.createElement("tr");
    tr.className = "sup";
    tr.append(cell(node.name), cell(`supervisor (${node.strategy || "?"})`), cell(node.state, node.state),
      cell(""), cell(""), cell(""), cell(""), cell(""), cell(""));
    tbody.append(tr);
  }
  for (const c of list(node.children)) {
    const row = document.createElement("tr");
    row.dataset.path = c.path;
    row.append(cell("\u00a0\u00a0".repeat(depth + 1) + c.id),
      cell(c.kind === "supervisor" && c.tree ? `supervisor (${c.tree.strategy || "?"})` : c.kind), cell(c.state, c.state),
      cell(c.pid ?? "-"), cell(fmtUptime(c.uptime_ms)), cell(c.restarts ?? 0), cell(c.health || "-", c.health),
      cell(c.ready == null ? "-" : c.ready ? "yes" : "no"));
    const act = document.createElement("td");
    for (const verb of ["restart", "stop"]) {
      const b = document.createElement("button");
      b.textContent = verb;
      b.onclick = () => ctl(verb, c.path);
      act.append(b);
    }
    row.append(act);
    tbody.append(row);
    if (c.tree) treeRows(tbody, c.tree, depth + 1, true);
  }
}

function renderTree(snap) {
  const tbody = $("tree").tBodies[0];
  tbody.replaceChildren();
  for (const root of list(snap.tree)) treeRows(tbody, root, 0);
}

function renderQueues(snap) {
  $("mb-depth").textContent = snap.mailbox?.depth ?? 0;
  $("mb-high").textContent = snap.mailbox?.high ?? 0;
  const tbody = $("procs").tBodies[0];
  tbody.replaceChildren();
  for (const p of list(snap.processes)) {
    const tr = document.createElement("tr");
    tr.append(cell(p.name), cell(p.pid), cell(p.state, p.state), cell(p.cpu == null ? "-" : p.cpu.toFixed(1) + "%"),
      cell(fmtBytes(p.rss)), cell(p.stdin_queued), cell(p.stdin_high));
    tbody.append(tr);
  }
}

// Rates from two snapshots' counters: per class (all outcomes but the
// accepted and dropped sums) and per outcome (summed over classes).
function rates(prev, snap) {
  const dt = (snap.t - prev.t) / 1000 || 1;
  const byClass = {}, byOutcome = {};
  const pc = prev.router?.classes || {}, cc = snap.router?.classes || {};
  for (const [cls, c] of Object.entries(cc)) {
    const p = pc[cls] || {};
    byClass[cls] = Math.max(0, ((c.accepted || 0) - (p.accepted || 0)) / dt);
    for (const [k, v] of Object.entries(c)) {
      if (k === "accepted" || k === "dropped" || typeof v !== "number") continue;
      byOutcome[k] = (byOutcome[k] || 0) + Math.max(0, (v - (p[k] || 0)) / dt);
    }
  }
  return { byClass, byOutcome };
}

function push(store, key, value, n) {
  if (!store[key]) store[key] = new Array(n).fill(null);
  store[key].push(value);
}

function chart(id, title, store) {
  const keys = Object.keys(store).sort();
  const el = $(id);
  const width = Math.max(300, el.parentElement.clientWidth - 10);
  const data = [series.t, ...keys.map((k) => store[k])];
  const sig = keys.join(",");
  if (!charts[id] || charts[id].sig !== sig) {
    charts[id]?.plot.destroy();
    const colors = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
    const opts = { title, width, height: 160, series: [{}, ...keys.map((k, i) => ({ label: k, stroke: colors[i % colors.length] }))],
      axes: [{}, { size: 50 }] };
    charts[id] = { sig, plot: new uPlot(opts, data, el) };
  } else {
    charts[id].plot.setData(data);
  }
}

function renderCharts(snap) {
  if (!last) return;
  const { byClass, byOutcome } = rates(last, snap);
  const n = series.t.length;
  series.t.push(snap.t / 1000);
  for (const k of new Set([...Object.keys(series.classes), ...Object.keys(byClass)])) push(series.classes, k, byClass[k] ?? 0, n);
  for (const k of new Set([...Object.keys(series.outcomes), ...Object.keys(byOutcome)])) push(series.outcomes, k, byOutcome[k] ?? 0, n);
  if (series.t.length > POINTS) {
    series.t.shift();
    for (const s of [series.classes, series.outcomes]) for (const k in s) s[k].shift();
  }
  chart("chart-class", "by subject class (accepted)", series.classes);
  chart("chart-outcome", "by outcome", series.outcomes);
  window.msrtSeries = series; // for the browser spec (spec/dashboard_spec.lua)
}

function onStats(snap) {
  $("host").textContent = `pid ${snap.pid} · CPU ${(snap.cpu ?? 0).toFixed(1)}% · RSS ${fmtBytes(snap.rss)}`;
  renderTree(snap);
  renderQueues(snap);
  renderCharts(snap);
  last = snap;
  window.msrtSnapshots = (window.msrtSnapshots || 0) + 1;
}

function onEvent(m) {
  if (m.subject === "msrt.stats" || m.subject.startsWith("msrt.ctl.")) return;
  const li = document.createElement("li");
  let data = sc.decode(m.data);
  li.textContent = `${new Date().toLocaleTimeString()} ${m.subject} ${data}`;
  const ol = $("events");
  ol.prepend(li);
  while (ol.children.length > 200) ol.lastChild.remove();
}

async function main() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  nc = await connect({ servers: `${proto}://${location.host}`, name: "msrt-dashboard" });
  $("conn").textContent = "live";
  $("conn").className = "ok";
  window.msrtConnected = true;
  (async () => { for await (const m of nc.subscribe("msrt.stats")) onStats(jc.decode(m.data)); })();
  (async () => { for await (const m of nc.subscribe("msrt.>")) onEvent(m); })();
  nc.closed().then(() => { $("conn").textContent = "disconnected"; $("conn").className = "bad"; });
}

main().catch((e) => { $("conn").textContent = "no live connection: " + (e.code || e.message); });
