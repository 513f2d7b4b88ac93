// The proxy's dashboard. It holds no data: every figure comes from the JSON API of the page's
// own origin, read again every REFRESH_MS. When the API wants a token (401/403) it asks for
// one, keeps it in sessionStorage (localStorage when "remember" is ticked), and sends it as
// `Authorization: Bearer`. `#token=...` in the URL is taken as the token too.
// Every string from the API is put in the page as text (textContent), never as HTML.
// A proxy that serves two stratum families (the summary has "protocols") gets a row of
// figures per family, a family column in the pools and workers tables and a chart per family;
// a CryptoNote-only proxy's page is as it was.
"use strict";

const REFRESH_MS = 10000;
const KEY = "stratum-proxy-token";
const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#a15c00", "#8250df", "#0a7ea4", "#bf3989", "#57606a"];
let span = 3600;
let timer = null;
let last = null;

function takeHashToken() {
  const m = /(?:^|[#&])token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function token() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY);
}

class NeedToken extends Error {}

async function api(path) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401 || r.status === 403) throw new NeedToken(r.status === 403 && t ? "wrong token" : "token needed");
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

function rate(hs) {
  if (!Number.isFinite(hs)) return "–";
  // Stratum V1 rates are large (a share of difficulty d counts d * 2^32 hashes).
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  let i = 0;
  while (hs >= 1000 && i < units.length - 1) { hs /= 1000; i++; }
  return (i === 0 ? hs.toFixed(hs < 10 ? 2 : 1) : hs.toFixed(2)) + " " + units[i];
}

function ago(unix) {
  if (!unix) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m";
}

// Average H/s of the history points within the last `secs` (null without points).
function average(points, secs) {
  if (!points || !points.length) return null;
  const newest = points[points.length - 1][0];
  const inside = points.filter(p => p[0] > newest - secs);
  return inside.reduce((a, p) => a + p[1], 0) / inside.length;
}

function showSummary(s) {
  setText("about", "v" + s.version + " · " + s.mode + " · up " + duration(s.uptime));
  setText("hr-600", rate(s.hashrate.total[1]));
  setText("hr-3600", rate(s.hashrate.total[2]));
  setText("hr-86400", rate(s.hashrate.total[4]));
  setText("miners-now", s.miners.now);
  setText("miners-max", "peak " + s.miners.max);
  setText("workers-count", s.workers + " workers");
  setText("upstreams-active", s.upstreams.active + " / " + s.upstreams.total);
  setText("upstreams-detail", "active / total · " + s.upstreams.sleep + " idle · " + s.upstreams.error + " failing");
  setText("accepted", s.results.accepted);
  setText("rejected", s.results.rejected);
  setText("invalid", s.results.invalid);
  setText("latency", s.results.latency + " ms");
  showFamilies(s);
}

// One row per family when the proxy serves more than one; the cards keep the top level's.
function showFamilies(s) {
  const box = document.getElementById("families");
  const fams = s.protocols || [];
  box.hidden = !s.protocols;
  document.getElementById("cards-note").hidden = !s.protocols;
  if (s.protocols) setText("cards-note", "The cards show " + s.protocol + ", the top-level family; every family below.");
  const body = document.querySelector("#families-table tbody");
  body.replaceChildren();
  for (const f of fams) {
    const tr = el("tr");
    tr.dataset.protocol = f.protocol;
    const cell = (what, text) => { const td = el("td", text); td.id = "family-" + f.protocol + "-" + what; return td; };
    tr.append(cell("name", f.protocol),
      cell("hr-600", rate(f.hashrate.total[1])), cell("hr-3600", rate(f.hashrate.total[2])),
      cell("hr-86400", rate(f.hashrate.total[4])),
      cell("miners", f.miners.now + " (peak " + f.miners.max + ")"), cell("workers", f.workers),
      cell("upstreams", f.upstreams.active + " / " + f.upstreams.total),
      cell("accepted", f.results.accepted), cell("rejected", f.results.rejected), cell("invalid", f.results.invalid));
    body.appendChild(tr);
  }
}

// Shows or hides the family columns (header cells with class "family-col").
function familyColumns(on) {
  for (const th of document.querySelectorAll("th.family-col")) th.hidden = !on;
}

// The chart(s): with one family, one chart of the proxy's line and each pool's; with two
// ("protocols" in the history), one chart per family (their rates differ by many orders of
// magnitude), each with the family's line and its pools' (a pool no upstream has now goes
// with the first family).
function showCharts(h, u, s) {
  const more = document.getElementById("chart-more");
  more.replaceChildren();
  if (!h.protocols) {
    document.getElementById("chart-title").hidden = true;
    drawChart(document.getElementById("chart"), document.getElementById("legend"),
      [["proxy", h.proxy]].concat(Object.entries(h.pools)), h.period);
    return;
  }
  const familyOf = new Map();
  for (const row of u.upstreams) if (row.pool && row.protocol) familyOf.set(row.pool, row.protocol);
  const names = Object.keys(h.protocols);
  const first = names.includes(s.protocol) ? s.protocol : names[0];
  const order = [first].concat(names.filter(n => n !== first));
  order.forEach((fam, i) => {
    const pools = Object.entries(h.pools).filter(([name]) => (familyOf.get(name) || first) === fam);
    let svg, legend, title;
    if (i === 0) {
      svg = document.getElementById("chart");
      legend = document.getElementById("legend");
      title = document.getElementById("chart-title");
    } else {
      title = el("h3", null, "chart-title");
      svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("class", "chart");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", fam + " hashrate over time");
      legend = el("ul", null, "legend");
      more.append(title, svg, legend);
    }
    title.hidden = false;
    title.textContent = fam;
    svg.dataset.protocol = fam;
    drawChart(svg, legend, [[fam, h.protocols[fam]]].concat(pools), h.period);
  });
}

// Draws `series` ([name, [[unix, H/s], ...]], the main line first) in `svg`, names them in
// `legend`.
function drawChart(svg, legend, series, period) {
  svg.replaceChildren();
  legend.replaceChildren();
  const NS = "http://www.w3.org/2000/svg";
  const main = series[0][1];
  const all = series.flatMap(([, pts]) => pts.map(p => p[0]));
  const newest = all.length ? Math.max(...all) : Date.now() / 1000;
  // A history shorter than the span fills the width (a new proxy has minutes, not a day).
  const from = Math.max(newest - span, all.length ? Math.min(...all) : newest - span);
  const width = Math.max(1, newest - from);
  const visible = series.map(([name, pts]) => [name, pts.filter(p => p[0] >= from)]);
  const top = Math.max(1, ...visible.flatMap(([, pts]) => pts.map(p => p[1]))) * 1.1;
  // Drawn in the chart's own pixels, so that labels are not stretched.
  const W = Math.round(svg.getBoundingClientRect().width) || 800, H = 240;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  for (let i = 0; i <= 4; i++) {
    const y = H - i * H / 4;
    const line = document.createElementNS(NS, "line");
    line.setAttribute("class", "grid-line");
    line.setAttribute("x1", 0); line.setAttribute("x2", W);
    line.setAttribute("y1", y); line.setAttribute("y2", y);
    svg.appendChild(line);
    if (i > 0) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("class", "axis");
      t.setAttribute("x", 4); t.setAttribute("y", y + 12);
      t.textContent = rate(top * i / 4);
      svg.appendChild(t);
    }
  }
  // Pools first, dashed; the proxy's line last, on top.
  const lines = visible.map(([name, pts], i) => [name, pts, COLORS[i % COLORS.length], i === 0]);
  for (const [name, pts, color, isProxy] of lines.slice(1).concat(lines.slice(0, 1))) {
    const poly = document.createElementNS(NS, "polyline");
    poly.setAttribute("class", "series " + (isProxy ? "proxy" : "pool"));
    poly.setAttribute("data-name", name);
    poly.setAttribute("data-points", pts.length);
    poly.setAttribute("stroke", color);
    poly.setAttribute("points", pts.map(p =>
      ((p[0] - from) / width * W).toFixed(1) + "," + (H - p[1] / top * H).toFixed(1)).join(" "));
    svg.appendChild(poly);
  }
  for (const [name, pts, color] of lines) {
    const li = el("li", name + " " + rate(pts.length ? pts[pts.length - 1][1] : NaN));
    li.style.setProperty("--swatch", color);
    legend.appendChild(li);
  }
  if (all.length) {
    for (const [x, t, anchor] of [[4, from, "start"], [W - 4, newest, "end"]]) {
      const label = document.createElementNS(NS, "text");
      label.setAttribute("class", "axis");
      label.setAttribute("x", x); label.setAttribute("y", H - 4);
      label.setAttribute("text-anchor", anchor);
      label.textContent = new Date(t * 1000).toLocaleTimeString();
      svg.appendChild(label);
    }
  }
  if (!main.length) {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("class", "axis");
    t.setAttribute("x", W / 2 - 120); t.setAttribute("y", H / 2);
    t.textContent = "the first point comes " + period + " s after the start";
    svg.appendChild(t);
  }
}

function showPools(u, h, marked) {
  const by = new Map();
  for (const row of u.upstreams) {
    const name = row.pool || "(not logged in)";
    const p = by.get(name) || { n: 0, states: new Set(), miners: 0, protocol: row.protocol };
    p.n++; p.states.add(row.state); p.miners += row.miners;
    by.set(name, p);
  }
  for (const name of Object.keys(h.pools)) if (!by.has(name)) by.set(name, { n: 0, states: new Set(["gone"]), miners: 0 });
  const body = document.querySelector("#pools tbody");
  body.replaceChildren();
  for (const [name, p] of by) {
    const tr = el("tr");
    tr.dataset.pool = name;
    tr.append(el("td", name));
    if (marked) tr.append(el("td", p.protocol || "–", "family"));
    tr.append(el("td", p.n));
    const state = [...p.states].sort().join(", ");
    tr.append(el("td", state, "state-" + (p.states.size === 1 ? state : "mixed")), el("td", p.miners));
    for (const secs of [600, 3600, 86400]) tr.append(el("td", rate(average(h.pools[name], secs))));
    body.appendChild(tr);
  }
}

function showWorkers(w, marked) {
  const body = document.querySelector("#workers tbody");
  body.replaceChildren();
  for (const r of w.workers) {
    const online = r[2] > 0;
    const tr = el("tr", null, online ? "online-row" : "offline");
    tr.dataset.worker = r[0];
    tr.dataset.status = online ? "online" : "offline";
    tr.append(el("td", r[0]));
    if (marked) tr.append(el("td", r[13], "family"));
    tr.append(el("td", online ? "online" : "offline", "status " + (online ? "online" : "offline")));
    tr.append(el("td", r[1]), el("td", r[2]), el("td", r[3]), el("td", r[4]), el("td", r[5]));
    tr.append(el("td", rate(r[9])), el("td", rate(r[10])), el("td", rate(r[12])), el("td", ago(r[7])));
    body.appendChild(tr);
  }
  if (!w.workers.length) {
    const tr = el("tr");
    const td = el("td", w.mode === "false" ? "worker records are off (workers: false)" : "no workers yet");
    td.colSpan = marked ? 12 : 11;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function showEvents(e) {
  const list = document.getElementById("events");
  list.replaceChildren();
  for (const n of e.events) {
    const li = el("li");
    li.dataset.kind = n.kind;
    li.append(el("span", new Date(n.unix * 1000).toLocaleString(), "when"), el("span", n.kind, "kind kind-" + n.kind),
      el("span", n.message + (n.count > 1 ? " (×" + n.count + ")" : "")));
    list.appendChild(li);
  }
  if (!e.events.length) list.appendChild(el("li", "nothing to report", "none"));
}

function askToken(why) {
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  setText("login-why", why === "wrong token" ? "That token was refused; enter the API's access token (http.access-token)." :
    "This API needs its access token (http.access-token).");
  setText("status", why);
  document.body.dataset.state = "token";
  document.getElementById("token").focus();
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [s, w, h, u, e] = await Promise.all(
      ["/1/summary", "/1/workers", "/1/history", "/1/upstreams", "/1/events"].map(api));
    last = { s, w, h, u, e };
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    const marked = Boolean(s.protocols);
    familyColumns(marked);
    showSummary(s); showCharts(h, u, s); showPools(u, h, marked); showWorkers(w, marked); showEvents(e);
    setText("status", "updated " + new Date().toLocaleTimeString());
    document.body.dataset.state = "ready";
  } catch (err) {
    if (err instanceof NeedToken) { askToken(err.message); return; }
    setText("status", "API unreachable: " + err.message + " (retrying)");
    document.body.dataset.state = "error";
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  takeHashToken();
  document.getElementById("login").addEventListener("submit", ev => {
    ev.preventDefault();
    const t = document.getElementById("token").value;
    sessionStorage.setItem(KEY, t);
    if (document.getElementById("remember").checked) localStorage.setItem(KEY, t);
    else localStorage.removeItem(KEY);
    refresh();
  });
  for (const b of document.querySelectorAll("#chart-tabs button")) {
    b.addEventListener("click", () => {
      span = Number(b.dataset.span);
      for (const o of document.querySelectorAll("#chart-tabs button")) o.classList.toggle("on", o === b);
      if (last) showCharts(last.h, last.u, last.s);
    });
  }
  window.addEventListener("resize", () => { if (last) showCharts(last.h, last.u, last.s); });
  refresh();
});
