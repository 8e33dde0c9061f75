// aiconn NOC page: polls the NOC API and draws the table, charts and activity feed.
// Nothing the page shows is remembered by the page: budget and attainment over time come from
// /v1/fleet/history (Prometheus), credits per period from /v1/fleet/credits (the ledger) and the
// activity feed from /v1/fleet/events (Kubernetes Events), wallets (balance, burn, projected
// exhaustion) from /v1/fleet/wallets (the ledger), so a reload shows the same history.
// The bearer token lives in sessionStorage (this tab only, gone when it closes). It can be typed
// into the form, or handed over once as #token=... in the URL fragment, which browsers never
// send to a server, so it cannot land in access logs; the fragment is removed at once.
"use strict";

const REFRESH_MS = 5000;
const HISTORY_MINUTES = 60;
const HISTORY_SLAS = 10;
const EVENTS_SHOWN = 50;
const TOKEN_KEY = "aiconn-noc-token";
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#ff7b72", "#bc8cff", "#39c5cf", "#f778ba",
  "#a5d6ff", "#7ee787", "#ffa657"];
// Phase -> how the row and its badge look; the kinds match the risk parts in fleetview.py.
const PHASE_KIND = { Failed: "failing", Invalid: "failing", Unplaceable: "unplaceable",
  EditUnplaceable: "unplaceable", Degraded: "degraded", Provisioning: "provisioning", Pending: "provisioning" };
let lastHistory = null;
let lastFleet = null;

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

// Money comes as an exact decimal string ("12.345678"): rounded half-even as a decimal, like the
// printed table (kubectl get aisla), never through a float (a float shows 0.165 as 0.17).
function amount(text, digits) {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(String(text));
  if (!m) return fmt(text, digits);
  const frac = (m[3] || "").padEnd(digits + 1, "0");
  let kept = BigInt(m[2] + frac.slice(0, digits));
  const next = frac[digits], rest = /[1-9]/.test(frac.slice(digits + 1));
  if (next > "5" || (next === "5" && (rest || kept % 2n === 1n))) kept += 1n;
  const whole = kept.toString().padStart(digits + 1, "0");
  const shown = digits ? whole.slice(0, -digits) + "." + whole.slice(-digits) : whole;
  return (m[1] && kept !== 0n ? "-" : "") + shown;
}

function cell(row, content, numeric, cls) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content);
  else td.textContent = content;
  if (numeric) td.classList.add("num");
  if (cls) td.classList.add(cls);
  row.appendChild(td);
  return td;
}

function badge(text, cls) {
  const span = document.createElement("span");
  span.className = "badge " + cls;
  span.textContent = text;
  return span;
}

function slaKey(it) {
  return it.namespace + "/" + it.name;
}

// Why an SLA ranks where it does, in words (the parts of the risk score).
function reasons(it) {
  const why = [];
  if (it.compliant === "False") why.push("in breach (an objective missed)");
  const kind = PHASE_KIND[it.phase];
  if (kind === "failing") why.push("reconcile failing (" + it.phase + ")");
  if (kind === "unplaceable") why.push("cannot be placed (" + it.phase + ")");
  if (kind === "degraded") why.push("network slice degraded");
  if (it.alerts.length) why.push("alerts " + it.alerts.join(", "));
  if (it.budgetRemainingPercent !== null && it.budgetRemainingPercent < 50) why.push("budget " + fmt(it.budgetRemainingPercent, 1) + " % left");
  return why;
}

function renderFirst(items) {
  const el = document.getElementById("first");
  const top = items[0];
  const why = top ? reasons(top) : [];
  if (!top || why.length === 0) {
    el.className = "calm";
    el.textContent = items.length ? "Nothing needs a human: no breach, failure, unplaceable SLA or alert." : "No SLAs.";
    return;
  }
  el.className = "urgent";
  const b = document.createElement("b");
  b.textContent = "Needs a human first: " + slaKey(top);
  el.replaceChildren(b, document.createTextNode(" — " + why.join("; ") + " (risk " + fmt(top.risk, 0) + ")"));
  el.dataset.sla = slaKey(top);
}

function renderTable(items) {
  const body = document.querySelector("#fleet tbody");
  const rows = items.map((it, n) => {
    const tr = document.createElement("tr");
    tr.dataset.sla = slaKey(it);
    const kind = PHASE_KIND[it.phase];
    if (kind === "failing" || kind === "unplaceable" || kind === "provisioning") tr.className = kind;
    else if (it.compliant === "False") tr.className = "breach";
    else if (it.compliant === "Unknown") tr.className = "unknown";
    cell(tr, String(n + 1), true);
    cell(tr, fmt(it.risk, 0), true);
    cell(tr, slaKey(it));
    cell(tr, it.tenant);
    cell(tr, (it.tier || "—") + " · " + (it.site || "—"));
    cell(tr, kind ? badge(it.phase, kind) : (it.phase || "—"), false, "phase");
    cell(tr, it.compliant === "False" ? "False (breach)" : it.compliant, false,
      { True: "good", False: "badtext", Unknown: "unk" }[it.compliant]);
    cell(tr, fmt(it.availabilityPercent, 3), true);
    cell(tr, fmt(it.ttftAttainmentPercent, 2), true);
    cell(tr, fmt(it.tpotAttainmentPercent, 2), true);
    cell(tr, fmt(it.budgetRemainingPercent, 1), true);
    cell(tr, it.creditsAccrued === null ? "—" : amount(it.creditsAccrued, 2) + " " + it.currency, true);
    cell(tr, it.alerts.join(" ") || "—");
    cell(tr, it.evaluationAgeSeconds === null ? "never" : fmt(it.evaluationAgeSeconds, 0) + " s ago", true);
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("count").textContent = "(" + items.length + " SLAs)";
}

function renderTiles(items) {
  const count = (c) => items.filter((i) => i.compliant === c).length;
  const phases = (kind) => items.filter((i) => PHASE_KIND[i.phase] === kind).length;
  const alerts = items.reduce((n, i) => n + i.alerts.length, 0);
  const tiles = [["SLAs", items.length], ["Compliant", count("True")], ["Not compliant", count("False")],
    ["Unknown", count("Unknown")], ["Failing", phases("failing")], ["Unplaceable", phases("unplaceable")],
    ["Provisioning", phases("provisioning")], ["Alerts firing", alerts]];
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
  // Enough decimals to tell the ticks apart: none for percent axes, more for cents of credit.
  const step = (hi - lo) / 4;
  const digits = step >= 5 ? 0 : Math.min(6, Math.max(1, Math.ceil(-Math.log10(step)) + 1));
  for (let i = 0; i <= 4; i++) {
    const v = lo + step * i;
    parts.push(svgEl("text", { x: 2, y: y(v) + 3 }, v.toFixed(digits) + unit));
    parts.push(svgEl("line", { x1: box.left, y1: y(v), x2: box.right, y2: y(v), class: "axis", "stroke-dasharray": "2 4" }));
  }
  svg.replaceChildren(...parts);
  return { box, y };
}

function message(svg, text) {
  svg.appendChild(svgEl("text", { x: 60, y: 110 }, text));
}

function clock(seconds, withSeconds) {
  const parts = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (withSeconds) parts.second = "2-digit";
  return new Date(seconds * 1000).toLocaleTimeString([], parts);
}

// Lines over time for the riskiest SLAs that have a series; each polyline carries its SLA and
// its lowest and highest value, so what the chart shows can be checked without reading pixels.
function lineChart(svg, series, order, range) {
  const bySla = new Map(series.map((s) => [s.namespace + "/" + s.name, s.points]));
  const keys = order.filter((k) => bySla.has(k) && bySla.get(k).length).slice(0, HISTORY_SLAS);
  const values = keys.flatMap((k) => bySla.get(k).map((p) => p[1]));
  // Below range.floor lines run along the bottom edge, so one deep outlier does not flatten the rest.
  const lo = values.length ? Math.max(range.floor, Math.min(range.lo, Math.floor(Math.min(...values) - 1))) : range.lo;
  const { box, y } = frame(svg, lo, range.hi, "%");
  if (keys.length === 0) {
    message(svg, "nothing recorded in this range yet");
    return;
  }
  if (lo < 0 && range.hi > 0) svg.appendChild(svgEl("line", { x1: box.left, y1: y(0), x2: box.right, y2: y(0), class: "zero" }));
  // The time axis starts at the first point recorded, so a short history is not a sliver.
  const t0 = Math.min(...keys.map((k) => bySla.get(k)[0][0]));
  const t1 = Date.parse(lastHistory.end) / 1000;
  const x = (t) => box.left + ((t - t0) / (t1 - t0 || 1)) * (box.right - box.left);
  const short = t1 - t0 < 600;
  svg.appendChild(svgEl("text", { x: box.left, y: 212 }, clock(t0, short)));
  svg.appendChild(svgEl("text", { x: box.right, y: 212, "text-anchor": "end" }, clock(t1, short)));
  keys.forEach((key, n) => {
    const points = bySla.get(key);
    const color = COLORS[n % COLORS.length];
    const coords = points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1));
    if (points.length === 1) coords.push(box.right.toFixed(1) + "," + y(points[0][1]).toFixed(1));
    const vs = points.map((p) => p[1]);
    svg.appendChild(svgEl("polyline", { points: coords.join(" "), fill: "none", stroke: color, "stroke-width": 2,
      "data-sla": key, "data-min": Math.min(...vs), "data-max": Math.max(...vs), "data-points": points.length }));
    svg.appendChild(svgEl("text", { x: box.left + (n % 3) * 195, y: 228 + Math.floor(n / 3) * 12, fill: color }, key.slice(0, 34)));
  });
}

function renderHistory(problem) {
  const budget = document.getElementById("chart-budget");
  const attainment = document.getElementById("chart-attainment");
  if (problem) {
    for (const svg of [budget, attainment]) {
      frame(svg, 0, 100, "%");
      message(svg, "history unavailable: " + problem);
    }
    return;
  }
  if (!lastHistory || !lastFleet) return;
  const order = lastFleet.items.map(slaKey);
  lineChart(budget, lastHistory.budget, order, { lo: -100, hi: 100, floor: -300 });
  const metric = document.getElementById("attainment-metric").value;
  const values = lastHistory[metric].flatMap((s) => s.points.map((p) => p[1]));
  const lo = values.length ? Math.max(0, Math.floor(Math.min(...values, 99) - 1)) : 90;
  lineChart(attainment, lastHistory[metric], order, { lo, hi: 100, floor: 0 });
}

function renderCredits(credits, problem) {
  const svg = document.getElementById("chart-credits");
  const items = credits ? credits.items : [];
  // Scaled to the largest credit, however small (a demo period pays cents), so no bar is flat.
  const hi = (Math.max(0, ...items.map((c) => Number(c.credits))) || 1) * 1.1;
  const { box, y } = frame(svg, 0, hi, "");
  if (problem || items.length === 0) {
    message(svg, problem ? "credits unavailable: " + problem : "no period settled yet");
    return;
  }
  const slot = (box.right - box.left) / items.length;
  items.forEach((c, n) => {
    const value = Number(c.credits);
    const top = y(value);
    // A month's period is labelled by its first day; a shorter one (minutes, as in the demo) by
    // its start time too, so that periods of one day stay apart.
    const start = c.periodStart;
    const label = start.slice(11, 19) === "00:00:00" ? start.slice(0, 10) : start.slice(5, 16).replace("T", " ");
    svg.appendChild(svgEl("rect", { x: box.left + n * slot + slot * 0.15, y: top, width: slot * 0.7,
      height: Math.max(box.bottom - top, 1), fill: COLORS[n % COLORS.length], "data-period": start, "data-credits": c.credits }));
    svg.appendChild(svgEl("text", { x: box.left + n * slot + slot * 0.15, y: 214 }, label));
    svg.appendChild(svgEl("text", { x: box.left + n * slot + slot * 0.15, y: 228 }, c.credits + " " + c.currency));
    if (c.heldForReview) svg.appendChild(svgEl("text", { x: box.left + n * slot + slot * 0.15, y: 242 }, c.heldForReview + " held"));
  });
}

// A table whose data could not be read says why in one row across its columns.
function unavailableRow(body, text, columns) {
  const tr = document.createElement("tr");
  cell(tr, text).colSpan = columns;
  body.replaceChildren(tr);
}

function renderEvents(events, problem) {
  const body = document.querySelector("#events tbody");
  if (problem) {
    unavailableRow(body, "events unavailable: " + problem, 5);
    return;
  }
  const shown = events.items.slice(0, EVENTS_SHOWN);
  body.replaceChildren(...shown.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.sla = e.namespace + "/" + e.name;
    tr.dataset.kind = e.kind;
    tr.dataset.reason = e.reason;
    if (e.type === "Warning") tr.className = "warning";
    cell(tr, new Date(e.time).toLocaleString(), true);
    cell(tr, badge(e.type, e.type));
    cell(tr, e.reason + (e.count > 1 ? " ×" + e.count : ""));
    cell(tr, (e.kind === "AIInferenceSLA" ? "" : e.kind + " ") + e.namespace + "/" + e.name);
    cell(tr, e.message, false, "msg");
    return tr;
  }));
  document.getElementById("events-count").textContent = "(" + shown.length + " of " + events.items.length + ")";
}

// Token counts are integers (exact in JSON up to 2^53, far above any wallet); the burn is a
// decimal string, shown as the API sends it, never through a float that could round it.
function tokens(text) {
  return BigInt(text).toLocaleString();
}

function renderWallets(wallets, problem) {
  const body = document.querySelector("#wallets tbody");
  if (problem) {
    unavailableRow(body, "wallets unavailable: " + problem, 6);
    return;
  }
  body.replaceChildren(...wallets.wallets.map((w) => {
    const tr = document.createElement("tr");
    tr.dataset.tenant = w.tenant;
    const exhausted = w.projectedExhaustion !== null && w.burnMeasuredTo !== null
      && new Date(w.projectedExhaustion) <= new Date(w.burnMeasuredTo);
    if (exhausted) tr.className = "warning";
    cell(tr, w.tenant);
    cell(tr, tokens(String(w.availableTokens)), true, "available");
    cell(tr, tokens(String(w.pendingUsageTokens)), true);
    cell(tr, w.burnTokensPerDay, true, "burn");
    const when = cell(tr, w.projectedExhaustion === null ? "never at this burn"
      : (exhausted ? "exhausted " : "") + new Date(w.projectedExhaustion).toISOString(), true, "exhaustion");
    when.dataset.at = w.projectedExhaustion || "";
    cell(tr, w.burnMeasuredTo === null ? "—" : new Date(w.burnMeasuredTo).toLocaleString(), true);
    return tr;
  }));
  document.getElementById("wallets-count").textContent = "(" + wallets.wallets.length + ")";
}

// One failing source must not blank the others: each settles to its value or its problem.
async function settle(promise) {
  try {
    return [await promise, null];
  } catch (error) {
    if (error.status === 401 || error.status === 403) throw error;
    return [null, error.message];
  }
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
    const [fleet, history, credits, events, wallets] = await Promise.all([
      getJSON("/v1/fleet", token),
      settle(getJSON("/v1/fleet/history?minutes=" + HISTORY_MINUTES, token)),
      settle(getJSON("/v1/fleet/credits", token)),
      settle(getJSON("/v1/fleet/events?limit=" + EVENTS_SHOWN * 4, token)),
      settle(getJSON("/v1/fleet/wallets", token)),
    ]);
    lastFleet = fleet;
    lastHistory = history[0];
    renderFirst(fleet.items);
    renderTiles(fleet.items);
    renderTable(fleet.items);
    renderHistory(history[1]);
    renderCredits(credits[0], credits[1]);
    renderEvents(events[0], events[1]);
    renderWallets(wallets[0], wallets[1]);
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
    refresh();
  });
  document.getElementById("attainment-metric").addEventListener("change", () => renderHistory(null));
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
