// aiconn NOC page: polls the fleet API and draws the table and charts as inline SVG.
// The bearer token lives in sessionStorage (this tab only, gone when it closes). It can be typed
// into the form, or handed over once as #token=... in the URL fragment, which browsers never
// send to a server, so it cannot land in access logs; the fragment is removed at once.
"use strict";

const REFRESH_MS = 5000;
const HISTORY_POINTS = 360;
const TOKEN_KEY = "aiconn-noc-token";
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#ff7b72", "#bc8cff", "#39c5cf", "#f778ba",
  "#a5d6ff", "#7ee787", "#ffa657"];
const budgetHistory = new Map();

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    window.history.replaceState(null, "", location.pathname + location.search);
  }
}

function setStatus(text, isError) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function getJSON(path, token) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ detail: response.statusText }));
    const error = new Error(response.status + ": " + problem.detail);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function fmt(value, digits) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

function cell(row, text, numeric, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.classList.add("num");
  if (cls) td.classList.add(cls);
  row.appendChild(td);
}

function renderTable(items) {
  const body = document.querySelector("#fleet tbody");
  const rows = items.map((it) => {
    const tr = document.createElement("tr");
    tr.dataset.sla = it.namespace + "/" + it.name;
    if (it.compliant === "False") tr.className = "bad";
    else if (it.compliant === "Unknown") tr.className = "unknown";
    cell(tr, fmt(it.risk, 0), true);
    cell(tr, it.namespace);
    cell(tr, it.name);
    cell(tr, it.tenant);
    cell(tr, it.tier || "—");
    cell(tr, it.site || "—");
    cell(tr, it.phase || "—");
    cell(tr, it.compliant, false,
      { True: "good", False: "badtext", Unknown: "unk" }[it.compliant]);
    cell(tr, fmt(it.availabilityPercent, 3), true);
    cell(tr, fmt(it.ttftAttainmentPercent, 2), true);
    cell(tr, fmt(it.tpotAttainmentPercent, 2), true);
    cell(tr, fmt(it.budgetRemainingPercent, 1), true);
    cell(tr, it.creditsAccrued === null ? "—" : fmt(it.creditsAccrued, 2) + " " + it.currency, true);
    cell(tr, it.alerts.join(" ") || "—");
    cell(tr, it.evaluationAgeSeconds === null ? "never" : fmt(it.evaluationAgeSeconds, 0) + " s ago", true);
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("count").textContent = "(" + items.length + " SLAs)";
}

function renderTiles(items) {
  const count = (c) => items.filter((i) => i.compliant === c).length;
  const alerts = items.reduce((n, i) => n + i.alerts.length, 0);
  const tiles = [["SLAs", items.length], ["Compliant", count("True")],
    ["Not compliant", count("False")], ["Unknown", count("Unknown")], ["Alerts firing", alerts]];
  document.getElementById("tiles").replaceChildren(...tiles.map(([label, value]) => {
    const div = document.createElement("div");
    div.className = "tile";
    const b = document.createElement("b");
    b.textContent = String(value);
    div.append(b, document.createTextNode(label));
    return div;
  }));
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// A plot area with a y axis from lo to hi; returns the y scale and the elements drawn.
function frame(svg, lo, hi, unit) {
  const box = { left: 44, right: 630, top: 10, bottom: 200 };
  const y = (v) => box.bottom - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo || 1)) * (box.bottom - box.top);
  const parts = [svgEl("line", { x1: box.left, y1: box.bottom, x2: box.right, y2: box.bottom, class: "axis" }),
    svgEl("line", { x1: box.left, y1: box.top, x2: box.left, y2: box.bottom, class: "axis" })];
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    parts.push(svgEl("text", { x: 2, y: y(v) + 3 }, v.toFixed(1) + unit));
    parts.push(svgEl("line", { x1: box.left, y1: y(v), x2: box.right, y2: y(v), class: "axis", "stroke-dasharray": "2 4" }));
  }
  svg.replaceChildren(...parts);
  return { box, y };
}

function recordHistory(items, at) {
  for (const it of items) {
    if (it.budgetRemainingPercent === null) continue;
    const key = it.namespace + "/" + it.name;
    const points = budgetHistory.get(key) || [];
    points.push([at, it.budgetRemainingPercent]);
    if (points.length > HISTORY_POINTS) points.shift();
    budgetHistory.set(key, points);
  }
}

function renderBudget(items) {
  const svg = document.getElementById("chart-budget");
  const keys = items.map((i) => i.namespace + "/" + i.name).filter((k) => budgetHistory.has(k)).slice(0, 10);
  const { box, y } = frame(svg, -100, 100, "%");
  const all = keys.flatMap((k) => budgetHistory.get(k));
  if (all.length === 0) {
    svg.appendChild(svgEl("text", { x: 240, y: 110 }, "no budget measured yet"));
    return;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]));
  const x = (t) => box.left + ((t - t0) / (t1 - t0 || 1)) * (box.right - box.left);
  keys.forEach((key, n) => {
    const points = budgetHistory.get(key);
    const color = COLORS[n % COLORS.length];
    const coords = points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1));
    if (points.length === 1) coords.push((box.right).toFixed(1) + "," + y(points[0][1]).toFixed(1));
    svg.appendChild(svgEl("polyline", { points: coords.join(" "), fill: "none", stroke: color, "stroke-width": 2, "data-sla": key }));
    svg.appendChild(svgEl("text", { x: box.left + (n % 5) * 118, y: 222 + Math.floor(n / 5) * 14, fill: color }, key));
  });
}

function renderAttainment(items) {
  const svg = document.getElementById("chart-attainment");
  const shown = items.slice(0, 20);
  const values = shown.flatMap((i) => [i.availabilityPercent, i.ttftAttainmentPercent, i.tpotAttainmentPercent])
    .filter((v) => v !== null);
  const lo = values.length ? Math.max(0, Math.floor(Math.min(...values, 99) - 1)) : 90;
  const { box, y } = frame(svg, lo, 100, "%");
  const slot = (box.right - box.left) / Math.max(shown.length, 1);
  const width = Math.max(slot / 4, 1);
  const series = [["availabilityPercent", COLORS[0]], ["ttftAttainmentPercent", COLORS[1]], ["tpotAttainmentPercent", COLORS[2]]];
  shown.forEach((it, n) => {
    series.forEach(([field, color], s) => {
      const v = it[field];
      if (v === null) return;
      const top = y(v);
      svg.appendChild(svgEl("rect", { x: box.left + n * slot + s * width + 2, y: top, width, height: Math.max(box.bottom - top, 1), fill: color, "data-sla": it.namespace + "/" + it.name }, undefined));
    });
    svg.appendChild(svgEl("text", { x: box.left + n * slot + 2, y: 212, transform: "rotate(30 " + (box.left + n * slot + 2) + " 212)" }, it.name.slice(0, 14)));
  });
  series.forEach(([field, color], s) => svg.appendChild(svgEl("text", { x: box.left + s * 120, y: 254, fill: color }, field.replace("Percent", ""))));
}

function renderCredits(summary) {
  const svg = document.getElementById("chart-credits");
  const tiers = summary.byTier.map((g) => [g.key, Object.values(g.creditsAccrued).reduce((a, b) => a + b, 0), Object.keys(g.creditsAccrued).join("/")]);
  const hi = Math.max(1, ...tiers.map((t) => t[1])) * 1.1;
  const { box, y } = frame(svg, 0, hi, "");
  const slot = (box.right - box.left) / Math.max(tiers.length, 1);
  tiers.forEach(([tier, total, currency], n) => {
    const top = y(total);
    svg.appendChild(svgEl("rect", { x: box.left + n * slot + slot * 0.2, y: top, width: slot * 0.6, height: Math.max(box.bottom - top, 1), fill: COLORS[n % COLORS.length], "data-tier": tier }));
    svg.appendChild(svgEl("text", { x: box.left + n * slot + slot * 0.2, y: 216 }, tier + ": " + total.toFixed(2) + " " + currency));
  });
}

async function refresh() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  document.getElementById("login").hidden = Boolean(token);
  document.getElementById("logout").hidden = !token;
  if (!token) {
    setStatus("enter a token with the NOC role", false);
    return;
  }
  try {
    const [fleet, summary] = await Promise.all([getJSON("/v1/fleet", token), getJSON("/v1/fleet/summary", token)]);
    recordHistory(fleet.items, Date.parse(fleet.generatedAt));
    renderTiles(fleet.items);
    renderTable(fleet.items);
    renderBudget(fleet.items);
    renderAttainment(fleet.items);
    renderCredits(summary);
    setStatus("updated " + new Date(fleet.generatedAt).toLocaleTimeString(), false);
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById("login").hidden = false;
    }
    setStatus(error.message, true);
  }
}

function start() {
  takeTokenFromFragment();
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    refresh();
  });
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    budgetHistory.clear();
    refresh();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
