// Drives the limpet dashboard in headless Chromium (Debian's /usr/bin/chromium)
// through playwright-core, for tests/e2e/test_dashboard_browser.py.
//
//   node dashboard.mjs URL ORIGIN SCREENSHOT PROFILE_DIR
//
// Loads URL (the admin address), waits for the origin table, clicks "drain"
// on ORIGIN, waits until the page shows it draining, saves a full-page
// screenshot, and prints one JSON line: the origins the page showed before
// and after, with their state and health badges, and what the page said
// about the drain (the alert lines, each load balancer's drain setting, the
// drain button's title and the toast), and the listeners table (protocol,
// certificates with their expiry and warning class). Exits 1 (with the reason
// on stderr) when a step fails or the page logged an error.
import { chromium } from "playwright-core";

const [url, origin, screenshot, profile] = process.argv.slice(2);
if (!url || !origin || !screenshot || !profile) {
  console.error("usage: node dashboard.mjs URL ORIGIN SCREENSHOT PROFILE_DIR");
  process.exit(2);
}

const rows = (page) => page.$$eval("tr[data-origin-row]", (trs) => trs.map((tr) => ({
  origin: tr.getAttribute("data-origin-row"),
  pool: tr.getAttribute("data-pool"),
  state: tr.querySelector(".state").textContent,
  health: tr.querySelector(".health").textContent,
})));

const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
let status = 0;
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
  page.on("request", (r) => {
    if (!r.url().startsWith(url.replace(/\/$/, "")))
      problems.push("request outside the admin address: " + r.url());
  });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("tr[data-origin-row]", { timeout: 10000 });
  const before = await rows(page);
  const drainTitle = await page.getAttribute(
    `button[data-action="drain"][data-origin="${origin}"]`, "title");
  await page.click(`button[data-action="drain"][data-origin="${origin}"]`);
  await page.waitForFunction((o) => {
    const tr = document.querySelector(`tr[data-origin-row="${o}"]`);
    return tr && tr.querySelector(".state").textContent.startsWith("draining");
  }, origin, { timeout: 10000 });
  const after = await rows(page);
  const alerts = await page.$$eval(".alert", (as) => as.map((a) => a.textContent));
  const lbDrain = await page.$$eval(".card[data-lb]", (cards) => cards.map((c) => ({
    lb: c.getAttribute("data-lb"),
    drain: (c.querySelector('dd[data-key="drain"]') || {}).textContent || null,
  })));
  const toast = await page.textContent("#toast");
  const listeners = await page.$$eval("tr[data-listener]", (trs) => trs.map((tr) => ({
    address: tr.getAttribute("data-listener"),
    protocol: tr.querySelector(".badge").textContent,
    certs: [...tr.querySelectorAll(".cert")].map((c) => ({
      file: c.getAttribute("data-cert"),
      expiring: c.classList.contains("expiring"),
      expired: c.classList.contains("expired"),
      expiry: c.querySelector(".cert-expiry").textContent,
    })),
  })));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ before, after, alerts, lbDrain, drainTitle, toast, listeners,
                               title: await page.title(), problems }));
  if (problems.length) {
    console.error(problems.join("\n"));
    status = 1;
  }
} catch (e) {
  console.error(String(e && e.stack || e));
  if (problems.length) console.error(problems.join("\n"));
  status = 1;
} finally {
  await context.close();
}
process.exit(status);
