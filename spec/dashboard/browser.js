// The dashboard in a real browser (spec/dashboard_spec.lua runs it):
// Debian's chromium, headless, driven by playwright-core, on loopback.
//   node browser.js PORT SCREENSHOT.png
// Opens http://127.0.0.1:PORT/, then checks: the tree renders (fleet/
// sleeper with a pid), a SIGKILL of that pid shows its restart (a new pid,
// restarts 1) within one second, the charts move while the host's load
// runs (the "load" class above zero), nats.ws in the page makes a request
// to an msrt actor. Prints one JSON object per check:
// {"check": name, "ok": bool, "detail": ...}, then "done".
const { chromium } = require("playwright-core");

const [port, shot] = process.argv.slice(2);
const report = (check, ok, detail) => console.log(JSON.stringify({ check, ok: !!ok, detail }));

async function rowOf(page, path) {
  return page.evaluate((p) => {
    const tr = document.querySelector(`tr[data-path="${p}"]`);
    return tr && [...tr.cells].map((c) => c.textContent.trim());
  }, path);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--headless=new"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => window.msrtConnected === true, null, { timeout: 10000 });
    report("connected", true);

    await page.waitForFunction(() => {
      const tr = document.querySelector('tr[data-path="fleet/sleeper"]');
      return tr && /^\d+$/.test(tr.cells[3].textContent.trim());
    }, null, { timeout: 10000 });
    const before = await rowOf(page, "fleet/sleeper");
    report("tree", before && before[2] === "running", before);

    const pid = Number(before[3]);
    const t0 = Date.now();
    process.kill(pid, "SIGKILL");
    let after, ms;
    try {
      await page.waitForFunction((old) => {
        const tr = document.querySelector('tr[data-path="fleet/sleeper"]');
        const p = tr && tr.cells[3].textContent.trim();
        return /^\d+$/.test(p) && Number(p) !== old && tr.cells[5].textContent.trim() !== "0";
      }, pid, { timeout: 5000, polling: 20 });
      ms = Date.now() - t0;
      after = await rowOf(page, "fleet/sleeper");
    } catch (e) {
      after = await rowOf(page, "fleet/sleeper");
    }
    report("restart_shown", ms !== undefined && ms <= 1000, { ms, before, after });

    // the charts: a few seconds of the load, the "load" class above zero
    await page.waitForFunction(() => {
      const s = window.msrtSeries;
      const load = s && s.classes.load;
      return load && load.filter((v) => v > 0).length >= 3;
    }, null, { timeout: 15000 });
    const moved = await page.evaluate(() => {
      const load = window.msrtSeries.classes.load.filter((v) => v > 0);
      return { points: window.msrtSeries.t.length, load: load.slice(-3), canvases: document.querySelectorAll("canvas").length };
    });
    report("charts_move", moved.load.length >= 3 && moved.canvases >= 2, moved);

    // nats.ws in the page: a request to an msrt actor
    const answer = await page.evaluate(async () => {
      const { connect, StringCodec } = await import("/vendor/nats.ws/nats.js");
      const sc = StringCodec();
      const nc = await connect({ servers: `ws://${location.host}` });
      const r = await nc.request("svc.upper", sc.encode("from the page"), { timeout: 5000 });
      await nc.close();
      return sc.decode(r.data);
    });
    report("page_request", answer === "FROM THE PAGE", answer);

    const events = await page.evaluate(() => document.querySelectorAll("#events li").length);
    report("events", events > 0, events);
    if (shot) await page.screenshot({ path: shot });
    report("page_errors", errors.length === 0, errors);
  } finally {
    await browser.close();
  }
  report("done", true);
}

main().catch((e) => {
  report("exception", false, String(e && e.stack || e));
  process.exit(1);
});
