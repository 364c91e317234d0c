// Ferry's dashboard: the admin API's own figures for people. It reads
// /v1/reports/overview, /v1/reports/outcomes and /v1/reports/usage with the
// token the user gives (kept in this tab's sessionStorage only), and draws
// with the DOM and SVG: no library, nothing fetched from anywhere else.
// Every value from the API is written as text, never as markup.
"use strict";

const KEY = "ferry-token";
const SVG = "http://www.w3.org/2000/svg";
const HOUR = 3600000;
const $ = (id) => document.getElementById(id);
const lang = navigator.language || "en";

let overview = null;

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const child of children) {
    if (child !== undefined && child !== null) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

const count = (n) => new Intl.NumberFormat(lang).format(n);
const percent = (x) => new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 }).format(x);
function money(cents) {
  const f = new Intl.NumberFormat(lang, { style: "currency", currency: overview.currency });
  return f.format(cents / 100);
}
function when(iso, withHour) {
  const opts = { timeZone: overview.time_zone, year: "numeric", month: "short", day: "numeric" };
  if (withHour) Object.assign(opts, { hour: "2-digit", minute: "2-digit" });
  return new Intl.DateTimeFormat(lang, opts).format(new Date(iso));
}
// YYYY-MM-DD of an instant in the contract's zone (what the API's dates mean).
function day(ms) {
  return new Intl.DateTimeFormat("en-CA", {
    timeZone: overview.time_zone, year: "numeric", month: "2-digit", day: "2-digit",
  }).format(new Date(ms));
}

// A number cell that carries the raw value, so the figure can be checked.
function num(value, text) {
  return el("td", { class: "num", "data-value": value }, text === undefined ? count(value) : text);
}

async function api(path, method, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(KEY), Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: method || "GET",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut("The token was refused: it is unknown, revoked or mistyped.");
    throw new Error("unauthorised");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${response.status} ${detail}`);
  }
  return response;
}

function query(extra) {
  const q = new URLSearchParams();
  if ($("from").value) q.set("from", $("from").value);
  if ($("to").value) q.set("to", $("to").value);
  const tenant = $("tenant").value;
  if (tenant) q.set("tenant", tenant);
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
  return q.toString();
}

async function load() {
  $("status").textContent = "Loading…";
  try {
    if (!$("from").value) {
      // First visit: this month so far, in the contract's zone (which the
      // overview names).
      overview = await api("/v1/reports/overview").then((r) => r.json());
      const today = day(Date.parse(overview.now));
      $("from").value = today.slice(0, 8) + "01";
      $("to").value = today;
    }
    const period = new URLSearchParams(query());
    period.delete("tenant");
    const [o, outcomes] = await Promise.all([
      api("/v1/reports/overview?" + period).then((r) => r.json()),
      api("/v1/reports/outcomes?" + query({ format: "json" })).then((r) => r.json()),
    ]);
    overview = o;
    // Finance does not see incidents (they are about applications' behaviour): no section then.
    const tenant = $("tenant").value;
    const own = tenant ? "&tenant=" + encodeURIComponent(tenant) : "";
    const incidents = o.caller.role === "finance" ? null
      : await api("/v1/incidents?open=true" + own).then((r) => r.json());
    const held = incidents === null ? [] : await api("/v1/held?limit=1000" + own).then((r) => r.json());
    showCaller();
    fillControls();
    showYear();
    showChart();
    showApps(outcomes.applications);
    showIncidents(incidents, held);
    $("status").textContent = `Figures as of ${when(o.now, true)} (${o.time_zone}).`;
  } catch (e) {
    if (e.message !== "unauthorised") $("status").textContent = "Could not load the figures: " + e.message;
  }
}

function showCaller() {
  const c = overview.caller;
  $("who").textContent = c.tenant ? `Signed in as ${c.role} of ${c.tenant}` : `Signed in as ${c.role}`;
}

function fillControls() {
  const select = $("tenant");
  const chosen = select.value;
  select.replaceChildren();
  if (overview.organisation) select.append(el("option", { value: "" }, "All tenants"));
  for (const t of overview.tenants) select.append(el("option", { value: t.tenant }, t.tenant));
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function card(label, value, raw, note) {
  return el("dl", { class: "card" }, el("dt", {}, label),
    el("dd", { "data-value": raw }, value, note ? el("small", {}, " " + note) : null));
}

function showYear() {
  const o = overview;
  $("year-span").textContent =
    `${when(o.year.start)} to ${when(Date.parse(o.year.end) - 1)}, counted in ${o.unit}. ` +
    `Forecasts are straight lines to the year's end, made from ${when(o.forecast_from)}.`;
  const scope = o.organisation || o.tenants[0];
  const total = o.organisation ? o.organisation.yearly_total : (scope && scope.allocation.yearly);
  const cards = [];
  if (scope) {
    cards.push(card(o.organisation ? "Used by the organisation" : `Used by ${scope.tenant}`,
      count(scope.used), scope.used, total ? `of ${count(total)} (${percent(scope.used / total)})` : null));
    cards.push(card("Forecast to year end", scope.forecast === null ? "not yet" : count(scope.forecast),
      scope.forecast, total && scope.forecast !== null ? `(${percent(scope.forecast / total)} of ${o.organisation ? "the contract" : "the allocation"})` : null));
    const peak = scope.year_peak;
    const limit = o.organisation ? o.organisation.hourly_peak : scope.allocation.hourly;
    cards.push(card("Year's peak hour", peak ? count(peak.units) : "none", peak ? peak.units : 0,
      (peak ? `on ${when(peak.hour_start, true)}` : "") + (limit ? `; contracted ${count(limit)}/h` : "")));
    cards.push(card("Charge-back so far", money(scope.charge_cents), scope.charge_cents));
  }
  $("cards").replaceChildren(...cards);
  const rows = [];
  if (o.organisation) rows.push(tenantRow("Organisation (contract)", o.organisation,
    { yearly: o.organisation.yearly_total, hourly: o.organisation.hourly_peak }, "organisation"));
  for (const t of o.tenants) rows.push(tenantRow(t.tenant, t, t.allocation, null));
  $("tenants").tBodies[0].replaceChildren(...rows);
  showThresholds();
}

// Every alert of the year once (a tenant's list repeats the organisation's
// alerts it drove), newest first.
function showThresholds() {
  const seen = new Map();
  for (const scope of [overview.organisation, ...overview.tenants]) {
    for (const a of scope ? scope.thresholds : []) seen.set(a.id, a);
  }
  const alerts = [...seen.values()].sort((a, b) => b.at.localeCompare(a.at));
  const rows = alerts.map((a) => el("tr", { "data-alert": a.id },
    el("td", {}, when(a.at, true)),
    el("td", {}, a.whose),
    el("td", {}, a.threshold),
    num(a.value, `${count(a.value)} of ${count(a.limit)}`),
    el("td", {}, a.driven_by.join(", ") || "—")));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5 }, "No threshold crossed this contract year.")));
  $("thresholds").tBodies[0].replaceChildren(...rows);
}

function tenantRow(name, t, allocation, cls) {
  const yearly = allocation.yearly;
  const share = yearly ? t.used / yearly : null;
  return el("tr", { class: cls, "data-tenant": cls ? "" : name },
    el("th", { scope: "row" }, name),
    num(t.used),
    yearly ? num(yearly) : num("", "—"),
    num(share === null ? "" : share, share === null ? "—" : percent(share)),
    num(t.forecast === null ? "" : t.forecast, t.forecast === null ? "not yet" : count(t.forecast)),
    t.year_peak ? num(t.year_peak.units, `${count(t.year_peak.units)} on ${when(t.year_peak.hour_start, true)}`) : num(0, "—"),
    num(t.thresholds.length),
    num(t.charge_cents, money(t.charge_cents)));
}

// The hourly series of the chosen tenant (or the organisation), with the
// hourly limit that applies and the year's peak hour marked.
function showChart() {
  const o = overview;
  const tenant = $("tenant").value;
  const scope = tenant ? o.tenants.find((t) => t.tenant === tenant) : (o.organisation || o.tenants[0]);
  const from = Date.parse(o.period.from);
  const to = Date.parse(o.period.to);
  const points = scope ? scope.series.map(([h, u]) => [Date.parse(h), u]) : [];
  const limit = scope ? (tenant || !o.organisation ? scope.allocation.hourly : o.organisation.hourly_peak) : null;
  const limitName = tenant || !o.organisation ? "hourly allocation" : "contracted hourly peak";
  const peak = scope && scope.year_peak ? [Date.parse(scope.year_peak.hour_start), scope.year_peak.units] : null;
  const W = 1000, H = 280, L = 64, R = 16, T = 22, B = 30;
  const max = Math.max(1, limit || 0, ...points.map((p) => p[1])) * 1.12;
  const x = (ms) => L + ((ms - from) / (to - from)) * (W - L - R);
  const y = (u) => H - B - (u / max) * (H - T - B);
  const width = Math.max(1.5, ((W - L - R) * HOUR) / (to - from) - 1);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-caption" });
  for (const u of [0, max / 2.24, max / 1.12]) {
    svg.append(el("svg:line", { class: "axis", x1: L, x2: W - R, y1: y(u), y2: y(u), opacity: u ? 0.25 : 1 }));
    svg.append(el("svg:text", { x: L - 6, y: y(u) + 4, "text-anchor": "end" }, count(Math.round(u))));
  }
  const short = to - from <= 3 * 86400000;
  const tick = new Intl.DateTimeFormat(lang, short
    ? { timeZone: o.time_zone, month: "short", day: "numeric", hour: "numeric" }
    : { timeZone: o.time_zone, month: "short", day: "numeric" });
  const ticks = 6;
  for (let i = 0; i <= ticks; i++) {
    const ms = from + ((to - from) * i) / ticks;
    svg.append(el("svg:text", { x: x(ms), y: H - 8, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" },
      tick.format(new Date(ms))));
  }
  for (const [ms, u] of points) {
    const isPeak = peak && ms === peak[0];
    svg.append(el("svg:rect", { class: isPeak ? "bar peak" : "bar", x: x(ms), y: y(u), width, height: y(0) - y(u) },
      el("svg:title", {}, `${when(new Date(ms).toISOString(), true)}: ${count(u)}`)));
  }
  if (limit) {
    svg.append(el("svg:line", { class: "limit", x1: L, x2: W - R, y1: y(limit), y2: y(limit) }));
    svg.append(el("svg:text", { class: "limit-label", x: W - R, y: y(limit) - 5, "text-anchor": "end" },
      `${limitName}: ${count(limit)}`));
  }
  let peakNote = "no use this contract year";
  if (peak) {
    peakNote = `the year's peak hour: ${count(peak[1])} on ${when(scope.year_peak.hour_start, true)}`;
    if (peak[0] >= from && peak[0] < to) {
      const px = Math.min(Math.max(x(peak[0]), L + 90), W - R - 90);
      svg.append(el("svg:text", { class: "peak-label", x: px, y: Math.max(T - 6, y(peak[1]) - 6), "text-anchor": "middle" },
        `peak hour ${count(peak[1])}`));
    } else {
      peakNote += " (outside this period)";
    }
  }
  $("chart-svg").replaceChildren(svg);
  const total = points.reduce((s, p) => s + p[1], 0);
  const who = tenant || (o.organisation ? "the organisation" : scope ? scope.tenant : "");
  $("chart-caption").textContent =
    `Use per hour by ${who}, ${when(o.period.from, true)} to ${when(o.period.to, true)}: ` +
    `${count(total)} ${o.unit} in ${count(points.length)} hours with use; ${peakNote}` +
    (limit ? `; ${limitName} ${count(limit)} per hour (dashed line).` : ".");
  $("hours").tBodies[0].replaceChildren(...points.map(([ms, u]) =>
    el("tr", {}, el("td", {}, when(new Date(ms).toISOString(), true)), num(u))));
}

function showApps(rows) {
  const body = rows.map((r) => el("tr", { "data-app": r.app },
    el("td", {}, r.tenant),
    el("th", { scope: "row" }, r.app),
    num(r.relayed),
    num(r.refused_total),
    el("td", {}, Object.entries(r.refused).map(([k, v]) => `${k.replaceAll("_", " ")}: ${count(v)}`).join(", ") || "none"),
    num(r.delivered),
    num(r.deferred),
    num(r.bounced),
    num(r.bounced_later),
    num(r.complained),
    num(r.held),
    num(r.released),
    num(r.discarded),
    // Complaints per recipient delivered: mailbox providers act at 0.3 %.
    num(r.complaint_rate ?? "", r.complaint_rate == null ? "–" : `${(r.complaint_rate * 100).toFixed(2)} %`)));
  if (!body.length) body.push(el("tr", {}, el("td", { colspan: 14 }, "No application sent or was refused in the period.")));
  $("apps").tBodies[0].replaceChildren(...body);
}

// A button that runs `act` and then loads the figures again.
function button(label, attrs, act) {
  const b = el("button", Object.assign({ type: "button" }, attrs), label);
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await act();
      await load();
    } catch (e) {
      if (e.message !== "unauthorised") $("status").textContent = `${label} failed: ${e.message}`;
      b.disabled = false;
    }
  });
  return b;
}

function showIncidents(list, held) {
  $("incidents-section").hidden = list === null;
  if (list === null) return;
  const body = list.map((i) => {
    const all = (action) => () => api("/v1/held/actions", "POST", { tenant: i.tenant, app: i.app, action });
    return el("tr", { "data-incident": i.id },
      el("td", {}, i.tenant),
      el("th", { scope: "row" }, i.app),
      el("td", {}, when(new Date(i.opened_ms).toISOString(), true)),
      el("td", {}, i.severity),
      el("td", {}, i.policy),
      el("td", {}, i.evidence.map((e) => e.detail).join("; ")),
      num(held.filter((h) => h.incident === i.id).length),
      el("td", {}, button("Release all", { "data-action": "release-all" }, all("release")), " ",
        button("Discard all", { "data-action": "discard-all" }, all("discard"))));
  });
  if (!body.length) body.push(el("tr", {}, el("td", { colspan: 8 }, "None: every application behaves like itself.")));
  $("incidents").tBodies[0].replaceChildren(...body);
  const rows = held.map((h) => {
    const path = "/v1/held/" + encodeURIComponent(h.id);
    const sample = async () => {
      const m = await api(path).then((r) => r.json());
      $("held-sample").textContent = m.content;
      $("held-sample").hidden = false;
    };
    return el("tr", { "data-held": h.id },
      el("td", {}, when(new Date(h.received_ms).toISOString(), true)),
      el("th", { scope: "row" }, h.app),
      el("td", {}, h.mail_from),
      num(h.recipients.length),
      el("td", {}, button("Sample", { "data-action": "sample" }, sample), " ",
        button("Release", { "data-action": "release" }, () => api(path + "/release", "POST")), " ",
        button("Discard", { "data-action": "discard" }, () => api(path, "DELETE"))));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5 }, "No held mail.")));
  $("held").tBodies[0].replaceChildren(...rows);
}

// The report as the API sends it, saved as a file: the bytes are not touched.
async function download(format) {
  try {
    const response = await api("/v1/reports/usage?" + query({ format }));
    const blob = await response.blob();
    const link = el("a", {
      href: URL.createObjectURL(blob),
      download: `ferry-usage-${$("from").value}-to-${$("to").value}${$("tenant").value ? "-" + $("tenant").value : ""}-${format}.csv`,
    });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (e) {
    if (e.message !== "unauthorised") $("status").textContent = "Could not download the report: " + e.message;
  }
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  overview = null;
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("token").focus();
}

function signedIn() {
  $("sign-in").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  load();
}

document.addEventListener("DOMContentLoaded", () => {
  // `make run` prints a link with the token in the fragment (never sent to
  // the server); it is kept for the tab and taken out of the address bar.
  const m = location.hash.match(/^#token=(ferry_[A-Za-z0-9_-]+)$/);
  if (m) {
    sessionStorage.setItem(KEY, m[1]);
    history.replaceState(null, "", location.pathname);
  }
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    signedIn();
  });
  $("period").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("tenant").addEventListener("change", () => load());
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("download-csv").addEventListener("click", () => download("csv"));
  $("download-focus").addEventListener("click", () => download("focus"));
  if (sessionStorage.getItem(KEY)) signedIn(); else signOut();
});
