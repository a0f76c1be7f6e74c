/*
 * limpet dashboard: polls the admin API every REFRESH_MS and redraws.
 *
 * Rates (requests/s, 5xx/s, affinity decisions/s) are differences between
 * two polls of the API's counters. Origin buttons PATCH
 * /api/v1/pools/{pool}/origins/{origin} with {"state": ...}. When the API
 * answers 401 the page asks for the admin token, keeps it in sessionStorage
 * (this tab only) and sends it as "Authorization: Bearer". A load balancer
 * with session affinity and drain_duration 0 keeps no session on a draining
 * origin: the page says so wherever a drain is shown or offered, since
 * "drain" then acts like "disable". Listeners show their certificates with
 * the days left before each expires (a warning under 14 days, an alert once
 * expired) and their TLS handshake rates. The DOM is built
 * with textContent only: nothing from the API is ever parsed as HTML.
 */
"use strict";

const REFRESH_MS = 1500;
const SPARK_POINTS = 80;               /* two minutes of req/s per origin */
const $ = (id) => document.getElementById(id);

let paused = false;
let previous = null;                   /* {t, origins: Map, lbs: Map} of the last poll */
let busy = false;
const history = new Map();             /* "pool/origin" -> [req/s, ...] */

/* ---- API ---- */

function authHeaders() {
  const token = sessionStorage.getItem("limpet-token");
  return token ? { Authorization: "Bearer " + token } : {};
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const init = { method, headers: authHeaders(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : r.status + " " + r.statusText;
    throw new ApiError(r.status, msg);
  }
  return data;
}

/* ---- small DOM helpers ---- */

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fmtRate(x) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  if (x === 0) return "0";
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function fmtCount(n) {
  if (n === null || n === undefined) return "–";
  return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(n);
}

function fmtDuration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + sec + "s";
  return sec + "s";
}

function toast(message, error) {
  const t = $("toast");
  t.textContent = message;
  t.className = "toast" + (error ? " error" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, error ? 8000 : 3000);
}

function spark(values) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + (SPARK_POINTS - 1) + " 20");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...values);
  const offset = SPARK_POINTS - values.length;
  const pts = values.map((v, i) => (offset + i) + "," + (19 - 18 * v / max).toFixed(1));
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(line);
  return svg;
}

/* ---- rendering ---- */

/* Names of the load balancers using pool p whose drain_duration is 0 while
 * they keep sessions: for them a drain moves sessions at once, like disable. */
function zeroDrainLbs(p, lbsByName) {
  return p.load_balancers.filter((name) => {
    const lb = lbsByName.get(name);
    return lb && lb.session_affinity !== "none" &&
      lb.session_affinity_attributes.drain_duration === 0;
  });
}

function zeroDrainNote(names) {
  return "drain_duration is 0 for " + names.join(", ") +
    ": a drain moves sessions at their next request, as disable does";
}

function rate(now, prev, dt) {
  if (prev === undefined || dt <= 0) return null;
  return Math.max(0, (now - prev) / dt);
}

function renderHeader(status) {
  const s = $("status");
  s.textContent = status.state;
  s.className = "pill pill-ok";
  const facts = $("facts");
  facts.replaceChildren(
    el("span", {}, "version ", el("b", { text: status.version })),
    el("span", {}, "up ", el("b", { text: fmtDuration(status.uptime) })),
    el("span", {}, "workers ", el("b", { text: status.workers })),
    el("span", { title: status.config || "" }, "config ",
       el("b", { text: status.config ? status.config.split("/").pop() : "built-in" })),
    el("span", {}, "generation ", el("b", { text: status.generation })),
    el("span", {}, "reloads ", el("b", { text: status.reloads + (status.reload_failures ?
      " (" + status.reload_failures + " failed)" : "") })));
}

function renderAlerts(pools, lbRates, lbsByName, listeners) {
  const alerts = [];
  for (const l of listeners)
    for (const c of l.certificates || []) {
      if (c.expired)
        alerts.push(["bad", "Listener " + l.address + ": certificate " + c.certificate +
                     " expired on " + c.not_after.slice(0, 10) + "."]);
      else if (c.expires_soon)
        alerts.push(["warn", "Listener " + l.address + ": certificate " + c.certificate +
                     " expires in " + c.days_left + " day" + (c.days_left === 1 ? "" : "s") +
                     " (" + c.not_after.slice(0, 10) + ")."]);
    }
  let origins = 0, up = 0;
  for (const p of pools) {
    origins += p.summary.origins;
    up += p.summary.up;
    if (p.summary.usable === 0)
      alerts.push(["bad", "Pool " + p.name + " has no usable origin: its load balancers use " +
                   "the next pool or answer 503."]);
    for (const o of p.origins) {
      if (!o.healthy)
        alerts.push(["bad", "Origin " + p.name + "/" + o.name + " (" + o.address + ") is down" +
                     (o.health && o.health.last_failure ? ": " + o.health.last_failure : "") + "."]);
      if (o.state === "draining") {
        const zero = zeroDrainLbs(p, lbsByName);
        alerts.push(["warn", "Origin " + p.name + "/" + o.name + " is draining" +
                     (o.draining_for !== null ? " for " + fmtDuration(o.draining_for) : "") +
                     "; about " + o.sessions + " sessions seen in the last window, " +
                     o.active_connections + " requests in flight." +
                     (zero.length ? " Note: " + zeroDrainNote(zero) + "." : "")]);
      }
    }
  }
  for (const [name, r] of lbRates)
    if (r.req > 0 && r.err / r.req > 0.05)
      alerts.push(["bad", "Load balancer " + name + ": " + (100 * r.err / r.req).toFixed(0) +
                   "% of responses are 5xx or failed."]);
  if (alerts.length === 0)
    alerts.push(["ok", "All " + origins + " origins up; nothing draining."]);
  else if (up === origins)
    alerts.push(["ok", "All " + origins + " origins up."]);
  $("alerts").replaceChildren(...alerts.map(([kind, text]) =>
    el("div", { class: "alert alert-" + kind, text })));
}

function lbCard(lb, r) {
  const a = lb.session_affinity_attributes;
  const kv = el("dl", { class: "kv" });
  const add = (k, v, attrs) => kv.append(el("dt", { text: k }), el("dd", { text: v, ...attrs }));
  add("listen", lb.listen.join(", ") || "–");
  add("pools", lb.default_pools.join(" → ") + (lb.fallback_pool ? "  ⇢ fallback " + lb.fallback_pool : ""));
  if (lb.session_affinity !== "none") {
    add("TTL", lb.session_affinity_ttl ? fmtDuration(lb.session_affinity_ttl) +
        " (" + lb.session_affinity_ttl + " s)" : "browser session");
    if (["cookie", "ip_cookie", "header"].includes(lb.session_affinity))
      add("cookie", a.cookie_name + "; SameSite " + a.samesite + "; Secure " + a.secure +
          (a.httponly ? "; HttpOnly" : ""));
    if (lb.session_affinity === "header") add("headers", a.headers.join(", "));
    if (a.app_cookie) add("app cookie", a.app_cookie.name + " (" + a.app_cookie.mode + ")");
    add("failover", a.zero_downtime_failover);
    if (a.drain_duration)
      add("drain", fmtDuration(a.drain_duration), { "data-key": "drain" });
    else
      add("drain", "0 s: drain acts like disable", {
        "data-key": "drain", class: "note",
        title: "drain_duration is 0: sessions on a draining origin move at their next request" });
  }
  const rates = el("div", { class: "rates" },
    el("div", { class: "rate" }, el("b", { text: fmtRate(r.req) }), el("span", { text: "req/s" })),
    el("div", { class: "rate" }, el("b", { text: fmtRate(r.err) }), el("span", { text: "5xx/s" })),
    el("div", { class: "rate" }, el("b", { text: fmtRate(r.new) }), el("span", { text: "new/s" })),
    el("div", { class: "rate" }, el("b", { text: fmtRate(r.hit) }), el("span", { text: "hits/s" })),
    el("div", { class: "rate" }, el("b", { text: fmtRate(r.moved) }), el("span", { text: "moved/s" })));
  return el("div", { class: "card", "data-lb": lb.name },
    el("h3", {}, lb.name, el("span", { class: "mode", text: "affinity: " + lb.session_affinity })),
    kv, rates);
}

async function setState(pool, origin, state, button, note) {
  if (state === "disabled" &&
      !window.confirm("Disable " + pool + "/" + origin + "? Its sessions move to other origins now."))
    return;
  button.disabled = true;
  try {
    await api("PATCH", "/api/v1/pools/" + encodeURIComponent(pool) + "/origins/" +
              encodeURIComponent(origin), { state });
    toast(pool + "/" + origin + ": " + state + (state === "draining" && note ? " (" + note + ")" : ""));
  } catch (e) {
    handleError(e);
    toast(pool + "/" + origin + ": " + e.message, true);
  }
  refresh();
}

function originRow(pool, o, r, drainNote) {
  const key = pool.name + "/" + o.name;
  const stateText = o.state + (o.state === "draining" && o.draining_for !== null ?
    " " + fmtDuration(o.draining_for) : "");
  const health = o.healthy ? "up" : "down";
  const healthTitle = o.health ? "monitor " + o.health.monitor + ": " + o.health.checks_pass +
    " passed, " + o.health.checks_fail + " failed" +
    (o.health.last_failure ? "; last failure: " + o.health.last_failure : "") : "no monitor";
  const button = (action, state, label, cls) => el("button", {
    type: "button", class: cls, "data-action": action, "data-pool": pool.name,
    "data-origin": o.name, disabled: o.state === state,
    title: label + " " + key + (action === "drain" && drainNote ? ": " + drainNote : ""),
    onclick: (ev) => setState(pool.name, o.name, state, ev.currentTarget, drainNote),
  }, action);
  return el("tr", { class: !o.healthy ? "down" : o.state === "draining" ? "draining" : "",
                    "data-origin-row": o.name, "data-pool": pool.name },
    el("td", {}, el("div", { class: "origin-name", text: o.name }),
       el("div", { class: "muted", text: o.address + (o.route !== o.name ? "  route " + o.route : "") })),
    el("td", {}, el("span", { class: "badge state b-" + o.state, text: stateText })),
    el("td", {}, el("span", { class: "badge health b-" + health, title: healthTitle, text: health })),
    el("td", { class: "num", text: o.weight }),
    el("td", { class: "num active", text: o.active_connections }),
    el("td", { class: "num reqs", text: fmtRate(r.req) }),
    el("td", {}, spark(history.get(key) || [])),
    el("td", { class: "num", text: fmtRate(r.err) }),
    el("td", { class: "num sessions", title: "distinct sessions in the last affinity window (estimate)",
               text: fmtCount(o.sessions) }),
    el("td", { class: "num", text: fmtCount(o.requests) }),
    el("td", {}, el("div", { class: "actions" },
       button("drain", "draining", "Drain", ""),
       button("enable", "enabled", "Enable", ""),
       button("disable", "disabled", "Disable", "danger"))));
}

function poolPanel(pool, originRates, lbsByName) {
  const s = pool.summary;
  const zero = zeroDrainLbs(pool, lbsByName);
  const drainNote = zero.length ? zeroDrainNote(zero) : "";
  const head = el("div", { class: "pool-head" },
    el("h3", { text: pool.name }),
    el("span", { class: "badge " + (s.usable === 0 ? "b-down" : s.usable < s.origins ? "b-draining" : "b-up"),
                 text: s.usable + "/" + s.origins + " usable" }),
    el("span", { class: "muted", text: "steering " + pool.origin_steering +
                 (pool.monitor ? " · monitor " + pool.monitor : " · no monitor") +
                 (pool.load_balancers.length ? " · used by " + pool.load_balancers.join(", ") : "") }));
  const table = el("table", {},
    el("thead", {}, el("tr", {},
      el("th", { text: "origin" }), el("th", { text: "state" }), el("th", { text: "health" }),
      el("th", { class: "num", text: "weight" }), el("th", { class: "num", text: "in flight" }),
      el("th", { class: "num", text: "req/s" }), el("th", { text: "last 2 min" }),
      el("th", { class: "num", text: "5xx/s" }), el("th", { class: "num", text: "sessions" }),
      el("th", { class: "num", text: "requests" }), el("th", { text: "" }))),
    el("tbody", {}, ...pool.origins.map((o) =>
      originRow(pool, o, originRates.get(pool.name + "/" + o.name) || {}, drainNote))));
  return el("div", { class: "pool", "data-pool": pool.name }, head, table);
}

function certCell(l) {
  if (!l.tls) {
    return el("span", { class: "muted", text: l.redirect_to_https ?
      "plain HTTP: every request redirected to https (" + l.redirect_to_https + ")" : "plain HTTP" });
  }
  return el("div", {}, ...l.certificates.map((c, i) => el("div", {
      class: "cert" + (c.expired ? " expired" : c.expires_soon ? " expiring" : ""),
      "data-cert": c.certificate, title: c.certificate + " / " + c.private_key },
    el("span", { class: "cert-name", text: c.subject || c.names }),
    el("span", { class: "muted", text: "  " + c.names + " · " + c.key_type +
                 (i === 0 ? " · default" : "") }),
    el("div", { class: "cert-expiry", text: (c.expired ? "expired " : "expires ") +
                c.not_after.slice(0, 10) + " (" + (c.expired ? "expired" : c.days_left +
                " day" + (c.days_left === 1 ? "" : "s") + " left") + ")" }))));
}

function listenersTable(listeners, rates) {
  return el("table", {},
    el("thead", {}, el("tr", {},
      el("th", { text: "address" }), el("th", { text: "load balancer" }),
      el("th", { text: "protocol" }), el("th", { text: "certificates" }),
      el("th", { class: "num", text: "handshakes/s" }), el("th", { class: "num", text: "resumed" }),
      el("th", { class: "num", text: "failed" }))),
    el("tbody", {}, ...listeners.map((l) => {
      const h = l.handshakes;
      const failed = h ? Object.values(h.failures).reduce((a, b) => a + b, 0) : null;
      const failTitle = h ? Object.entries(h.failures).filter(([, v]) => v)
        .map(([k, v]) => k + " " + v).join(", ") : "";
      return el("tr", { "data-listener": l.address },
        el("td", { class: "origin-name", text: l.address }),
        el("td", { text: l.load_balancer }),
        el("td", {}, el("span", { class: "badge " + (l.tls ? "b-tls" : "b-plain"),
                                 text: l.tls ? "HTTPS" : "HTTP" }),
           l.hsts !== undefined ? el("span", { class: "muted", text: " HSTS " + fmtDuration(l.hsts) }) : null),
        el("td", {}, certCell(l)),
        el("td", { class: "num", text: h ? fmtRate(rates.get(l.address)) : "–" }),
        el("td", { class: "num", text: h ? (h.completed ? (100 * h.resumed / h.completed).toFixed(0) + "%" : "–") : "–" }),
        el("td", { class: "num", title: failTitle, text: h ? fmtCount(failed) : "–" }));
    })));
}

function render(status, lbs, pools, listeners) {
  const t = performance.now() / 1000;
  const dt = previous ? t - previous.t : 0;
  const now = { t, origins: new Map(), lbs: new Map() };
  const originRates = new Map(), lbRates = new Map();
  for (const p of pools) {
    for (const o of p.origins) {
      const key = p.name + "/" + o.name;
      const c = { req: o.requests, err: o.responses["5xx"] + o.responses.none };
      now.origins.set(key, c);
      const prev = previous && previous.origins.get(key);
      const r = { req: rate(c.req, prev && prev.req, dt), err: rate(c.err, prev && prev.err, dt) };
      originRates.set(key, r);
      if (r.req !== null) {
        const h = history.get(key) || [];
        h.push(r.req);
        if (h.length > SPARK_POINTS) h.shift();
        history.set(key, h);
      }
    }
  }
  for (const lb of lbs) {
    const a = lb.stats.affinity;
    const moved = Object.entries(a).filter(([k]) => k.startsWith("reassigned") ||
      k.startsWith("failover") || k === "invalid-cookie").reduce((n, [, v]) => n + v, 0);
    const c = { req: lb.stats.requests, err: lb.stats.responses["5xx"] + lb.stats.responses.none,
                new: a.new, hit: a.hit, moved };
    now.lbs.set(lb.name, c);
    const prev = previous && previous.lbs.get(lb.name);
    const r = {};
    for (const k of Object.keys(c)) r[k] = rate(c[k], prev && prev[k], dt);
    lbRates.set(lb.name, r);
  }
  const handshakeRates = new Map();
  for (const l of listeners) {
    if (!l.handshakes) continue;
    now.handshakes = now.handshakes || new Map();
    now.handshakes.set(l.address, l.handshakes.completed);
    const prev = previous && previous.handshakes && previous.handshakes.get(l.address);
    handshakeRates.set(l.address, rate(l.handshakes.completed, prev, dt));
  }
  previous = now;
  renderHeader(status);
  const lbsByName = new Map(lbs.map((lb) => [lb.name, lb]));
  renderAlerts(pools, lbRates, lbsByName, listeners);
  $("lbs").replaceChildren(...lbs.map((lb) => lbCard(lb, lbRates.get(lb.name))));
  $("listeners").replaceChildren(listenersTable(listeners, handshakeRates));
  $("pools").replaceChildren(...pools.map((p) => poolPanel(p, originRates, lbsByName)));
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

/* ---- the loop ---- */

function handleError(e) {
  if (e instanceof ApiError && e.status === 401) {
    const dialog = $("login");
    $("login-error").hidden = !sessionStorage.getItem("limpet-token");
    if (!dialog.open) dialog.showModal();
    return true;
  }
  return false;
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [status, lbs, pools, listeners] = await Promise.all([
      api("GET", "/api/v1/status"), api("GET", "/api/v1/load_balancers"),
      api("GET", "/api/v1/pools"), api("GET", "/api/v1/listeners")]);
    render(status, lbs.load_balancers, pools.pools, listeners.listeners);
  } catch (e) {
    if (!handleError(e)) {
      const s = $("status");
      s.textContent = "UNREACHABLE";
      s.className = "pill pill-bad";
      s.title = String(e.message || e);
      $("updated").textContent = "last try " + new Date().toLocaleTimeString() + " failed";
    }
  } finally {
    busy = false;
  }
}

function tick() {
  if (!paused && !$("login").open) refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("pause").addEventListener("click", (ev) => {
    paused = !paused;
    ev.currentTarget.textContent = paused ? "resume" : "pause";
    if (!paused) refresh();
  });
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("limpet-token", $("token").value.trim());
    $("login").close();
    refresh();
  });
  refresh();
  setInterval(tick, REFRESH_MS);
});
