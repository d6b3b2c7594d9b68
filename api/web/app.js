// finsent live page: alerts from the SSE stream (/v1/stream/alerts), negative share by topic
// and for one key, a ticker or a topic (/v1/series, 1-minute buckets), the latest items (/v1/events)
// with who each is about: a chip per entity in the tone of its own sentiment (a click opens its chart),
// and its story (issue 20): "new" on the first item of a story, "×N copies" on an item whose
// story has been stored N times (rows stored before stories existed carry neither: nothing shown).
// An alert lists the stories of its evidence (alert.stories) with their copies and sources.
// The key chart shows, in this order: the key in the address (?ticker=ACME, ?topic=…), the one
// clicked or typed, the newest alert's key (following new alerts as they open), the ticker
// most mentioned in the latest items.
// Plain browser JavaScript, no build step; the chart library is Plotly, served by the API
// from the installed `plotly` Python package.
"use strict";

const REFRESH_MS = 10000;
const SPAN_MS = 2 * 3600 * 1000;
const $ = (id) => document.getElementById(id);
// the key chart's key and why it is that one: "address", "chosen", "newest alert", "busiest"
const view = { keyType: "ticker", key: "", why: "" };

async function getJSON(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of params || []) url.searchParams.append(k, v);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value == null ? "" : String(value);
  if (cls) el.className = cls;
  return el;
}

// --- alerts --------------------------------------------------------------------------------

function alertItem(event, a) {
  const li = document.createElement("li");
  li.className = `${a.severity || "low"} ${event}`;
  li.dataset.key = `${a.key_type}:${a.key}`;
  li.dataset.keyType = a.key_type;
  li.dataset.keyName = a.key;
  li.tabIndex = 0;
  li.title = `show ${a.key_type} ${a.key} in the chart below`;
  li.setAttribute("role", "button");
  li.append(text("span", event, "ev"), text("strong", `${a.key_type} ${a.key}`), text("span", ` · ${a.severity} · `));
  const share = a.n ? Math.round((100 * a.negatives) / a.n) : 0;
  const p = a.p_value != null ? Number(a.p_value).toExponential(1) : "?";
  const at = a.window_start ? new Date(a.window_start).toLocaleTimeString([], { hour12: false }) : "";
  li.append(text("span", `${a.negatives}/${a.n} negative (${share}%), p=${p}, window from ${at}`));
  const stories = alertStories(a.stories);
  if (stories) li.append(stories);
  return li;
}

// the alert's evidence as stories, most copies first: "3 stories: ×12 wire-a, forum · ×1 …"
function alertStories(stories) {
  if (!Array.isArray(stories) || !stories.length) return null;
  const div = text("div", `${stories.length} ${stories.length === 1 ? "story" : "stories"}: `, "stories");
  stories.forEach((s, n) => {
    const sources = Array.isArray(s.sources) ? s.sources.join(", ") : "";
    const span = text("span", `×${s.copies} ${sources}`.trim(), "story");
    span.dataset.storyId = s.story_id;
    span.dataset.copies = String(s.copies);
    span.title = `story ${s.story_id}: ${s.copies} ${s.copies === 1 ? "copy" : "copies"}${sources ? ` from ${sources}` : ""}`;
    if (n) div.append(" · ");
    div.append(span);
  });
  return div;
}

function showAlert(event, alert) {
  const list = $("alerts");
  list.querySelector(".empty")?.remove();
  list.prepend(alertItem(event, alert));
  while (list.children.length > 100) list.lastChild.remove();
  markSelected();
}

// the 20 newest alerts, open or not; the key chart opens on the newest one's key
async function loadAlerts() {
  const page = await getJSON("/v1/alerts", [["limit", "20"]]);
  for (const a of page.items.slice().reverse()) showAlert(a.state || "open", a);
  if (page.items.length) follow(page.items[0]);
}

// a new or newer alert: the key chart follows it unless a key was asked for
function follow(a) {
  if (view.why === "address" || view.why === "chosen" || !a.key_type || !a.key) return false;
  return setKey(a.key_type, a.key, "newest alert");
}

function setKey(keyType, key, why) {
  const changed = keyType !== view.keyType || key !== view.key;
  Object.assign(view, { keyType, key, why });
  $("key-type").value = keyType;
  $("key").value = key;
  $("key-why").textContent = why;
  markSelected();
  return changed;
}

function markSelected() {
  for (const li of $("alerts").children) {
    li.classList.toggle("selected", li.dataset.keyType === view.keyType && li.dataset.keyName === view.key);
  }
}

function chooseAlert(li) {
  if (!li?.dataset.keyName) return;
  setKey(li.dataset.keyType, li.dataset.keyName, "chosen");
  history.replaceState(null, "", `?${view.keyType}=${encodeURIComponent(view.key)}`);
  drawKey().catch(showError);
  $("key-panel").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function connectAlerts() {
  const source = new EventSource("/v1/stream/alerts");
  const status = $("status");
  source.onopen = () => { status.textContent = "live"; status.className = "status live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "status down"; };
  for (const name of ["opened", "escalated", "resolved"]) {
    source.addEventListener(name, (e) => {
      const msg = JSON.parse(e.data);
      showAlert(msg.event, msg.alert || {});
      if (msg.event !== "resolved" && follow(msg.alert || {})) drawKey().catch(showError);
    });
  }
}

// --- charts ------------------------------------------------------------------------------

const LAYOUT = {
  paper_bgcolor: "#181b1f", plot_bgcolor: "#181b1f", font: { color: "#d8d9da", size: 11 },
  margin: { l: 40, r: 40, t: 10, b: 30 }, yaxis: { tickformat: ".0%", range: [0, 1], gridcolor: "#2c2f33" },
  xaxis: { gridcolor: "#2c2f33", type: "date" }, legend: { orientation: "h", y: -0.22 }, showlegend: true,
};
const MIN_VIEW_MS = 10 * 60 * 1000;

async function series(keyType, keys) {
  const end = new Date();
  const params = [["key_type", keyType], ["bucket", "1m"], ["start", new Date(end - SPAN_MS).toISOString()],
                  ["end", end.toISOString()], ...keys.map((k) => ["key", k])];
  return (await getJSON("/v1/series", params)).series;
}

// The x range: from a little before the first bucket with data (a fresh stack has only minutes
// of it) to now, at least MIN_VIEW_MS wide, at most the 2 h fetched.
function xRange(rows) {
  const end = Date.now() + 60 * 1000;
  let first = end;
  for (const s of rows) {
    const i = s.n.findIndex((n) => n > 0);
    if (i >= 0) first = Math.min(first, Date.parse(s.t[i]));
  }
  const start = Math.max(end - SPAN_MS, Math.min(first - 2 * 60 * 1000, end - MIN_VIEW_MS));
  return [new Date(start).toISOString(), new Date(end).toISOString()];
}

// `withVolume`: also the bucket's item count as bars on a right-hand axis (the ticker chart)
function draw(id, rows, withVolume) {
  const traces = rows.map((s) => ({ x: s.t, y: s.negative_share, name: `${s.key} negative share`, type: "scatter",
                                    mode: "lines+markers", marker: { size: 5 }, connectgaps: false }));
  const layout = { ...LAYOUT, xaxis: { ...LAYOUT.xaxis, range: xRange(rows) } };
  if (withVolume) {
    for (const s of rows) {
      traces.unshift({ x: s.t, y: s.n, name: `${s.key} items per minute`, type: "bar", yaxis: "y2",
                       marker: { color: "rgba(138,184,255,0.35)" } });
    }
    layout.yaxis2 = { overlaying: "y", side: "right", rangemode: "tozero", tickmode: "auto", nticks: 5, showgrid: false,
                      title: { text: "items" } };
  } else {
    for (const t of traces) t.name = t.name.replace(/ negative share$/, "");
  }
  const el = $(id);
  el.dataset.points = String(rows.reduce((n, s) => n + s.n.reduce((a, b) => a + b, 0), 0));
  if (window.Plotly) Plotly.react(el, traces, layout, { displayModeBar: false, responsive: true });
}

function topKeys(values, n) {
  const counts = new Map();
  for (const v of values) counts.set(v, (counts.get(v) || 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n).map((e) => e[0]);
}

async function drawKey() {
  if (view.key) draw("key-chart", await series(view.keyType, [view.key]), true);
}

async function refreshCharts(items) {
  const topics = topKeys(items.map((i) => i.topic), 8);
  if (topics.length) draw("topic-chart", await series("topic", topics), false);
  if (!view.key) {
    const busiest = topKeys(items.flatMap((i) => i.tickers), 1)[0];
    if (busiest) setKey("ticker", busiest, "most mentioned in the latest items");
  }
  await drawKey();
}

// --- items -------------------------------------------------------------------------------

function itemRow(i) {
  const tr = document.createElement("tr");
  const headline = document.createElement("td");
  const title = i.title || i.text.slice(0, 160);
  if (i.url && /^https?:\/\//.test(i.url)) {
    const a = text("a", title);
    a.href = i.url; a.target = "_blank"; a.rel = "noopener noreferrer";
    headline.append(a);
  } else headline.textContent = title;
  headline.append(...storyBadges(i));
  tr.append(text("td", new Date(i.published_at).toISOString().slice(11, 19)), text("td", i.source), headline,
            text("td", i.topic), entityChips(i), text("td", i.sentiment, i.sentiment),
            text("td", i.p_negative.toFixed(2)));
  return tr;
}

// the item's story: "new" (first of its story), "×N copies" (its story stored N times so far,
// this item included); nothing for a row without story fields
function storyBadges(i) {
  const out = [];
  if (i.story_id == null) return out;
  if (i.novel === true) {
    const b = text("span", "new", "badge novel");
    b.title = `first item of story ${i.story_id}`;
    out.push(b);
  }
  if (Number(i.copies) > 1) {
    const b = text("span", `×${i.copies} copies`, "badge copies");
    b.dataset.storyId = i.story_id;
    b.title = i.novel === false ? `a copy of story ${i.story_id}: ${i.copies} items of it when this one was stored`
      : `story ${i.story_id}: ${i.copies} items of it when this one was stored`;
    out.push(b);
  }
  return out;
}

// who the item is about: one chip per entity, most relevant first, coloured by its own sentiment;
// an item without entity rows shows its ticker keys in grey
function entityChips(i) {
  const td = document.createElement("td");
  td.className = "entities";
  const ents = i.entities && i.entities.length ? i.entities
    : i.tickers.map((t) => ({ ticker: t, sentiment: "", relevance: null, sources: [] }));
  for (const e of ents) {
    const chip = text("button", e.ticker, `chip ${e.sentiment || "unknown"}`);
    chip.type = "button";
    chip.dataset.ticker = e.ticker;
    if (e.sources && e.sources.length === 1 && e.sources[0] === "name") chip.classList.add("by-name");
    const how = e.sources && e.sources.length ? ` · found by ${e.sources.join(", ")}` : "";
    const rel = e.relevance != null ? ` · relevance ${Number(e.relevance).toFixed(2)}` : "";
    const tone = e.sentiment ? ` · ${e.sentiment} (${Number(e.score).toFixed(2)}, ${e.sentiment_from})` : "";
    chip.title = `${e.name || e.ticker}${tone}${rel}${how} · click for its chart`;
    td.append(chip);
  }
  return td;
}

function chooseTicker(chip) {
  if (!chip?.dataset.ticker) return;
  setKey("ticker", chip.dataset.ticker, "chosen");
  history.replaceState(null, "", `?ticker=${encodeURIComponent(view.key)}`);
  drawKey().catch(showError);
  $("key-panel").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function showError(err) {
  $("status").textContent = `error: ${err.message}`;
  $("status").className = "status down";
}

async function refresh() {
  try {
    const page = await getJSON("/v1/events", [["limit", "50"]]);
    $("items").replaceChildren(...page.items.map(itemRow));
    await refreshCharts(page.items);
  } catch (err) {
    showError(err);
  }
}

function typed() {
  const keyType = $("key-type").value;
  const raw = $("key").value.trim();
  setKey(keyType, keyType === "ticker" ? raw.toUpperCase() : raw, "chosen");
  drawKey().catch(showError);
}

window.addEventListener("DOMContentLoaded", () => {
  const params = new URLSearchParams(location.search);
  for (const keyType of ["ticker", "topic"]) {
    const key = (params.get(keyType) || "").trim();
    if (key) setKey(keyType, keyType === "ticker" ? key.toUpperCase() : key, "address");
  }
  $("key").addEventListener("change", typed);
  $("key-type").addEventListener("change", typed);
  $("alerts").addEventListener("click", (e) => chooseAlert(e.target.closest("li")));
  $("alerts").addEventListener("keydown", (e) => { if (e.key === "Enter") chooseAlert(e.target.closest("li")); });
  $("items").addEventListener("click", (e) => chooseTicker(e.target.closest("button.chip")));
  // the newest alert decides the key chart before the first draw
  loadAlerts().catch(() => {}).finally(() => { connectAlerts(); refresh(); setInterval(refresh, REFRESH_MS); });
});
