// dynrec inspector: plain JS over the service's v1 API, same origin only. The API key, when the
// service needs one, lives in `apiKey` and this tab's sessionStorage; it is sent as X-API-Key and
// never written anywhere else (no console output at all).
"use strict";

const KEY_STORE = "dynrec.inspector.apiKey";
let apiKey = sessionStorage.getItem(KEY_STORE) || "";
let refreshTimer = null;
let generation = 0; // bumped on every navigation: late answers for a page left behind are dropped

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
  "#31a354", "#756bb1", "#636363"];
const colour = (segment) => segment === null || segment === undefined ? "#999" : PALETTE[segment % PALETTE.length];

// ---- DOM helpers: text always goes in as text, never as markup -------------------------------
function h(tag, attrs, ...children) {
  const svg = ["svg", "circle", "g", "line", "text", "polyline", "rect", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.setAttribute("class", value);
    else if (name in el && !svg) el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
const $ = (selector) => document.querySelector(selector);
const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const when = (ts) => new Date(ts * 1000).toISOString().replace("T", " ").replace(".000Z", " UTC");
const itemLink = (id, title) => h("a", { href: `#/item/${encodeURIComponent(id)}` }, title || id);
const userLink = (id) => h("a", { href: `#/user/${encodeURIComponent(id)}` }, id);

function say(text, kind) {
  const box = $("#message");
  box.textContent = text;
  box.className = kind || "";
  box.hidden = !text;
}

// ---- the API ------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    super(ApiError.describe(status, body));
    this.status = status;
  }
  static describe(status, body) {
    if (status === 401) return "This service needs an API key for that: enter it at the top right and press Use.";
    if (status === 0) return "The service did not answer (network error).";
    let text = body && body.error ? body.error : `HTTP ${status}`;
    const detail = body && body.detail;
    if (Array.isArray(detail)) {
      text += ": " + detail.map((d) => (d.loc ? d.loc.filter((p) => p !== "body").join(".") + " " : "") + (d.msg || "")).join("; ");
    } else if (detail && typeof detail === "object") {
      text += ": " + JSON.stringify(detail);
    } else if (detail) {
      text += ": " + detail;
    }
    return text;
  }
}

async function call(method, path, body, accept) {
  const headers = { Accept: accept };
  if (apiKey) headers["X-API-Key"] = apiKey;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, null);
  }
  if (response.status === 401) $("#key-form").classList.add("needed");
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return response;
}

async function api(method, path, body) {
  const response = await call(method, path, body, "application/json");
  return response.json().catch(() => null);
}

// A file the API serves (an item's image) as a blob: URL, fetched with the key like any read (an
// <img src> could not send it); every such URL is released when the page is left.
let objectUrls = [];
async function apiFile(path) {
  const url = URL.createObjectURL(await (await call("GET", path, undefined, "*/*")).blob());
  objectUrls.push(url);
  return url;
}

function showKeyState() {
  $("#key-state").textContent = apiKey ? "key set for this tab" : "no key";
  $("#api-key").value = "";
  $("#key-form").classList.remove("needed");
}

// ---- routing ------------------------------------------------------------------------------
const PAGES = { user: userPage, item: itemPage, segments: segmentsPage, health: healthPage };

function route() {
  generation += 1;
  clearInterval(refreshTimer);
  refreshTimer = null;
  objectUrls.forEach((url) => URL.revokeObjectURL(url));
  objectUrls = [];
  const [, page = "user", ...rest] = location.hash.replace(/^#/, "").split("/");
  const name = PAGES[page] ? page : "user";
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : "";
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === name);
  say("");
  const view = $("#view");
  view.replaceChildren();
  PAGES[name](view, arg, generation).catch((e) => say(e.message));
}

const current = (gen) => gen === generation;

// ---- User ---------------------------------------------------------------------------------
function lookupForm(placeholder, value, page) {
  const input = h("input", { name: "id", placeholder, value: value || "", required: true, spellcheck: false });
  return h("form", { class: "inline", id: `${page}-lookup`, onsubmit: (e) => {
    e.preventDefault();
    const id = input.value.trim();
    if (id) location.hash = `#/${page}/${encodeURIComponent(id)}`;
  } }, input, h("button", { type: "submit" }, "Look up"));
}

async function userPage(view, userId, gen) {
  view.append(lookupForm("user id, e.g. 1", userId, "user"));
  if (!userId) {
    view.append(h("p", { class: "muted" }, "Look up a user to see their history, segment and recommendations."));
    return;
  }
  const profile = h("div", { class: "card", id: "user-profile" }, h("span", { class: "muted" }, "loading…"));
  const history = h("div", { class: "card", id: "user-history" });
  const recs = h("div", { class: "card", id: "user-recommendations" });
  view.append(h("div", { class: "grid" }, profile, history), recs);

  const state = { diversity: null, include: "", exclude: "", previous: null, changed: null };
  const categories = (text) => text.split(",").map((c) => c.trim()).filter(Boolean);

  async function loadUser() {
    const user = await api("GET", `/v1/users/${encodeURIComponent(userId)}`);
    if (!current(gen)) return;
    const seg = user.segment || {};
    profile.replaceChildren(
      h("h2", {}, `User ${user.user_id}`),
      h("dl", { class: "kv" },
        h("dt", {}, "known"), h("dd", {}, user.known ? "yes" : "no (recommendations come from popularity and segments)"),
        h("dt", {}, "history length"), h("dd", { id: "history-length" }, user.history_length),
        h("dt", {}, "events since start"), h("dd", {}, user.events_since_start ?? "–"),
        h("dt", {}, "segment"), h("dd", { id: "user-segment" }, seg.segment_id === null || seg.segment_id === undefined
          ? seg.label || "–" : h("a", { href: "#/segments" }, `#${seg.segment_id}: ${seg.label}`)),
        h("dt", {}, "attributes"), h("dd", {}, Object.keys(user.attributes || {}).length
          ? Object.entries(user.attributes).map(([k, v]) => h("span", { class: "tag" }, `${k}: ${v}`)) : "none"),
        h("dt", {}, "embedding norm"), h("dd", {}, fmt(user.embedding_norm))),
      ...[interests(user.interests)].filter(Boolean));
    const recent = user.recent || [];
    history.replaceChildren(h("h2", {}, "History (newest first)"), recent.length
      ? h("ol", { class: "timeline", id: "timeline" }, recent.map((e) => h("li", { "data-item-id": e.item_id },
        itemLink(e.item_id, e.title), " ", h("span", { class: "tag" }, e.event_type),
        e.event_type === "rating" ? h("span", { class: "tag" }, `value ${e.value}`) : null,
        h("span", { class: "muted" }, " ", when(e.timestamp)))))
      : h("p", { class: "muted" }, "No events yet."));
  }

  const diversity = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: 0, id: "diversity", oninput: () => {
    state.diversity = Number(diversity.value);
    diversityLabel.textContent = diversity.value;
    requery();
  } });
  const diversityLabel = h("span", { id: "diversity-value" }, "service default");
  const include = h("input", { id: "include-categories", placeholder: "e.g. Comedy, Drama", oninput: () => { state.include = include.value; requery(); } });
  const exclude = h("input", { id: "exclude-categories", placeholder: "e.g. Horror", oninput: () => { state.exclude = exclude.value; requery(); } });
  const listBox = h("div", { id: "rec-list" });
  recs.append(h("h2", {}, "Recommendations"),
    h("div", { class: "controls" },
      h("label", {}, "diversity ", diversity, " ", diversityLabel),
      h("label", {}, "only categories ", include),
      h("label", {}, "never categories ", exclude)),
    listBox);

  let pending = null;
  function requery() {
    clearTimeout(pending);
    pending = setTimeout(() => loadRecommendations().catch((e) => say(e.message)), 200);
  }

  async function loadRecommendations() {
    const body = { user_id: userId, num_results: 10,
      filters: { include_categories: categories(state.include), exclude_categories: categories(state.exclude) } };
    if (state.diversity !== null) body.diversity = state.diversity;
    const list = await api("POST", "/v1/recommendations", body);
    if (!current(gen)) return;
    const before = state.previous ? new Set(state.previous.items.map((i) => i.item_id)) : null;
    state.previous = list;
    const fresh = before ? list.items.filter((i) => !before.has(i.item_id)).length : 0;
    listBox.replaceChildren(
      h("p", { class: "muted" }, "model ", h("code", { id: "rec-model" }, list.model_version),
        list.user_model_version ? ` · user model ${list.user_model_version}` : "",
        " · recommendation ", h("code", { id: "rec-id" }, list.recommendation_id),
        state.changed ? h("span", { id: "rec-changed" }, ` · after ${state.changed}: ${fresh} new in the list`) : ""),
      list.note ? h("p", { class: "muted", id: "rec-note" }, list.note) : "",
      h("table", { id: "rec-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "item"), h("th", { class: "num" }, "score"),
          h("th", {}, "reason"), h("th", {}, "explored"), h("th", {}, "send event"))),
        h("tbody", {}, list.items.map((item, position) => h("tr", {
          "data-item-id": item.item_id, class: before && !before.has(item.item_id) ? "changed" : null },
        h("td", {}, position + 1), h("td", {}, itemLink(item.item_id, item.title)), h("td", { class: "num" }, fmt(item.score)),
        h("td", {}, item.reason), h("td", {}, item.explored ? h("span", { class: "tag flag" }, "explored") : ""),
        h("td", {},
          h("button", { class: "small", "data-action": "click", onclick: () => send(item, "click", 1, list.recommendation_id) }, "click"),
          " ",
          h("button", { class: "small", "data-action": "rate", onclick: () => send(item, "rating", 5, list.recommendation_id) }, "rate 5")))))));
  }

  async function send(item, eventType, value, recommendationId) {
    const event = { user_id: userId, item_id: item.item_id, event_type: eventType, value };
    if (eventType === "click" && recommendationId) event.recommendation_id = recommendationId;
    try {
      const answer = await api("POST", "/v1/events", { events: [event] });
      if (answer.rejected && answer.rejected.length) throw new Error(`event refused: ${answer.rejected[0].error}`);
      state.changed = `${eventType} on ${item.title || item.item_id}`;
      say(`Sent ${eventType} on ${item.title || item.item_id}.`, "info");
      await Promise.all([loadUser(), loadRecommendations()]);
    } catch (e) {
      say(e.message);
    }
  }

  try {
    await Promise.all([loadUser(), loadRecommendations()]);
  } catch (e) {
    profile.replaceChildren(h("p", { id: "user-error" }, e.message));
    throw e;
  }
}

// The user's interests, when the service describes them (`interests` in GET /v1/users/{id}): each
// with its share of the user's history as a bar. Nothing at all when the field is absent or empty.
function interests(list) {
  if (!Array.isArray(list) || !list.length) return null;
  return h("div", { id: "user-interests" }, h("h2", {}, "Interests"),
    h("ul", { class: "interests" }, list.map((interest) => {
      const share = Math.max(0, Math.min(1, Number(interest.share) || 0));
      const bar = h("span", { class: "share-bar" }, h("span", {}));
      bar.firstChild.style.width = `${(share * 100).toFixed(1)}%`;
      return h("li", {},
        h("span", { class: "interest-label" }, interest.label || "–"), " ", bar, " ",
        h("span", { class: "muted" }, `${(share * 100).toFixed(0)}%`), " ",
        (interest.top_categories || []).map((c) => h("span", { class: "tag" }, c)));
    })));
}

// ---- Item ---------------------------------------------------------------------------------
async function itemPage(view, itemId, gen) {
  view.append(lookupForm("item id, e.g. 50", itemId, "item"));
  if (!itemId) {
    view.append(h("p", { class: "muted" }, "Look up an item to see what it is, how it has been used and what it sits next to."));
    return;
  }
  const id = encodeURIComponent(itemId);
  const [item, similar] = await Promise.all([
    api("GET", `/v1/items/${id}`),
    api("GET", `/v1/items/${id}/similar?num_results=10`).catch((e) => ({ error: e.message })),
  ]);
  if (!current(gen)) return;
  const flag = (on, text) => h("span", { class: on ? "tag flag" : "tag off" }, on ? text : `not ${text}`);
  const picture = h("div", { id: "item-image", class: "picture" },
    h("span", { class: "muted" }, item.has_image ? "loading the image…" : "no image"));
  const exploration = h("dd", { id: "item-exploration" }, "…");
  const activity = h("div", { class: "card", id: "item-activity" });
  view.append(h("div", { class: "grid" },
    h("div", { class: "card", id: "item-detail" },
      h("h2", {}, item.title),
      h("div", { class: "item-head" }, picture,
        h("p", { id: "item-text", class: item.text ? "" : "muted" }, item.text || "No text.")),
      h("dl", { class: "kv" },
        h("dt", {}, "item id"), h("dd", {}, item.item_id),
        h("dt", {}, "categories"), h("dd", {}, item.categories.length ? item.categories.map((c) => h("span", { class: "tag" }, c)) : "none"),
        h("dt", {}, "flags"), h("dd", { id: "item-flags" }, flag(item.new, "new"), flag(item.hidden, "hidden"),
          flag(item.has_image, "with image")),
        h("dt", {}, "exploration"), exploration,
        h("dt", {}, "attributes"), h("dd", {}, Object.keys(item.attributes).length
          ? Object.entries(item.attributes).map(([k, v]) => h("span", { class: "tag" }, `${k}: ${v}`)) : "none"),
        h("dt", {}, "model version"), h("dd", {}, h("code", {}, item.model_version))),
      h("p", { class: "muted" }, "A new item is one the served model has no trained id embedding for: it is embedded from its content alone.")),
    h("div", {}, activity,
      h("div", { class: "card", id: "item-similar" },
        h("h2", {}, "Similar items"),
        similar.error ? h("p", { class: "muted" }, similar.error) : h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "item"), h("th", { class: "num" }, "score"), h("th", {}, "reason"))),
          h("tbody", {}, similar.items.map((s) => h("tr", {}, h("td", {}, itemLink(s.item_id, s.title)),
            h("td", { class: "num" }, fmt(s.score)), h("td", {}, s.reason)))))))));

  if (item.has_image) {
    apiFile(`/v1/items/${id}/image`).then((url) => {
      if (current(gen)) picture.replaceChildren(h("img", { src: url, alt: `image of ${item.title}` }));
    }).catch((e) => picture.replaceChildren(h("span", { class: "muted" }, e.message)));
  }

  const bucket = h("select", { id: "activity-bucket", onchange: () => loadActivity().catch((e) => say(e.message)) },
    h("option", { value: "day:30" }, "per day, 30 days"), h("option", { value: "hour:48" }, "per hour, 48 hours"));
  const chartBox = h("div", { id: "activity-box" }, h("span", { class: "muted" }, "loading…"));
  activity.append(h("h2", {}, "Behaviour over time"), h("div", { class: "controls" }, bucket), chartBox);

  async function loadActivity() {
    const [unit, count] = bucket.value.split(":");
    const answer = await api("GET", `/v1/items/${id}/activity?bucket=${unit}&buckets=${count}`);
    if (!current(gen)) return;
    const ex = answer.exploration;
    exploration.replaceChildren(flag(ex.explorable, "explorable"), " ",
      h("span", { class: "muted" }, ex.explorable ? `created within ${ex.max_age_days} days: explored slots may show it. `
        : `not visible, or older than ${ex.max_age_days} days: no explored slot shows it. `,
      `${ex.shown} attributed impressions, ${ex.clicks} clicks`));
    chartBox.replaceChildren(activityChart(answer));
  }
  await loadActivity();
}

// The item's events per bucket, one line per event type, the newest bucket on the right.
const TYPE_ORDER = ["impression", "click", "rating", "view"];
function activityChart(answer) {
  const types = Object.keys(answer.counts).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const totals = Object.keys(answer.totals).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const unit = answer.bucket;
  const day = (ts) => when(ts).slice(0, unit === "day" ? 10 : 16);
  const summary = h("p", { class: "muted", id: "activity-summary" }, totals.length
    ? ["All time: ", totals.map((t, i) => [i ? ", " : "", h("span", { "data-type": t }, `${answer.totals[t]} ${t}`)]),
      ` · first event ${day(answer.first_event)}, newest ${day(answer.last_event)}`]
    : "No events logged for this item yet.");
  if (!types.length) {
    return h("div", {}, summary, h("p", { class: "muted", id: "activity-empty" }, `Nothing in the window (per ${unit}).`));
  }
  const n = answer.counts[types[0]].length;
  const width = 560, height = 150, left = 30, bottom = 20, top = 8;
  const highest = Math.max(1, ...types.flatMap((t) => answer.counts[t]));
  const x = (i) => left + (n > 1 ? i / (n - 1) : 0.5) * (width - left - 8);
  const y = (v) => top + (1 - v / highest) * (height - top - bottom);
  const start = (i) => answer.start + i * answer.bucket_s;
  const chart = h("svg", { class: "activity", id: "activity-chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `events per ${unit}`, "data-buckets": n },
    h("line", { x1: left, y1: y(0), x2: width - 8, y2: y(0), class: "axis" }),
    h("text", { x: left - 4, y: y(highest) + 4, class: "tick", "text-anchor": "end" }, highest),
    h("text", { x: left - 4, y: y(0) + 4, class: "tick", "text-anchor": "end" }, 0),
    h("text", { x: left, y: height - 6, class: "tick" }, day(start(0))),
    h("text", { x: width - 8, y: height - 6, class: "tick", "text-anchor": "end" }, day(start(n - 1))),
    types.map((t) => h("g", { class: "series", "data-type": t, "data-counts": answer.counts[t].join(",") },
      h("polyline", { points: answer.counts[t].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
        stroke: typeColour(t) }),
      answer.counts[t].map((v, i) => v ? h("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: typeColour(t) },
        h("title", {}, `${day(start(i))}: ${v} ${t}`)) : null))));
  const legend = h("div", { class: "legend", id: "activity-legend" }, types.map((t) => {
    const i = h("i");
    i.style.background = typeColour(t);
    return h("span", { "data-type": t }, i, `${t}: ${answer.counts[t].reduce((a, b) => a + b, 0)} in the window`);
  }));
  return h("div", {}, chart, legend, summary);
}
const rank = (type) => (TYPE_ORDER.includes(type) ? TYPE_ORDER.indexOf(type) : TYPE_ORDER.length);
const typeColour = (type) => PALETTE[rank(type) < TYPE_ORDER.length ? rank(type) : 4 + (type.length % 10)];

// ---- Segments -----------------------------------------------------------------------------
async function segmentsPage(view, _arg, gen) {
  const [summary, projection] = await Promise.all([
    api("GET", "/v1/segments"),
    api("GET", "/v1/segments/projection?limit=2000"),
  ]);
  if (!current(gen)) return;
  view.append(h("div", { class: "card" },
    h("h2", {}, `${summary.k} segments (version ${summary.version}, silhouette ${fmt(summary.silhouette, 2)})`),
    h("p", { class: "muted" }, `${projection.users.length} users on the first two principal components of their segment features; hover for the user, click to open them.`),
    scatter(projection.users),
    h("div", { id: "hover" }, " "),
    h("div", { class: "legend" }, summary.segments.map((s) => h("span", {}, swatch(s.segment_id), `#${s.segment_id} ${s.label}`)))));
  const cards = summary.segments.map((s) => segmentCard(s));
  view.append(h("div", { class: "grid", id: "segment-cards" }, cards));
}

function swatch(segment) {
  const i = h("i");
  i.style.background = colour(segment);
  return i;
}

function scatter(users) {
  const width = 900, height = 520, pad = 16;
  const xs = users.map((u) => u.x), ys = users.map((u) => u.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (width - 2 * pad);
  const sy = (y) => height - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (height - 2 * pad);
  const hover = (u) => () => { $("#hover").textContent = `user ${u.user_id} · segment ${u.segment_id ?? "–"}`; };
  return h("svg", { class: "scatter", id: "scatter", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "users by segment" },
    users.map((u) => h("circle", { cx: sx(u.x).toFixed(1), cy: sy(u.y).toFixed(1), r: 3.2, fill: colour(u.segment_id),
      "fill-opacity": 0.75, "data-user-id": u.user_id, onmouseenter: hover(u),
      onclick: () => { location.hash = `#/user/${encodeURIComponent(u.user_id)}`; } },
    h("title", {}, `user ${u.user_id} (segment ${u.segment_id ?? "–"})`))));
}

function segmentCard(s) {
  const recs = h("div", {});
  const load = async () => {
    try {
      const list = await api("GET", `/v1/segments/${s.segment_id}/recommendations?num_results=10`);
      recs.replaceChildren(h("ol", {}, list.items.map((i) => h("li", {}, itemLink(i.item_id, i.title), " ",
        h("span", { class: "muted" }, `${fmt(i.score, 2)} · ${i.reason}`)))));
    } catch (e) {
      recs.replaceChildren(h("p", { class: "muted" }, e.message));
    }
  };
  const card = h("div", { class: "card segment", "data-segment-id": s.segment_id },
    h("h2", {}, swatch(s.segment_id), `#${s.segment_id} ${s.label}`),
    h("dl", { class: "kv" },
      h("dt", {}, "size"), h("dd", {}, s.size),
      h("dt", {}, "top categories"), h("dd", {}, s.top_categories.map((c) => h("span", { class: "tag" }, c))),
      h("dt", {}, "terms"), h("dd", {}, s.terms.join(", ") || "–"),
      h("dt", {}, "attributes"), h("dd", {}, Object.entries(s.attributes || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}: ${v}`))),
      h("dt", {}, "top items"), h("dd", {}, s.top_items.slice(0, 8).map((i, n) => [n ? ", " : "", itemLink(i.item_id, i.title)]))),
    h("h2", {}, "Recommendations for the segment"), recs);
  load();
  return card;
}

// ---- Health -------------------------------------------------------------------------------
async function healthPage(view, _arg, gen) {
  const body = h("div", { id: "health" }, h("span", { class: "muted" }, "loading…"));
  const windowSelect = h("select", { id: "window", onchange: () => refresh() },
    [60, 300, 600].map((s) => h("option", { value: s, selected: s === 300 }, `last ${s / 60} min`)));
  view.append(h("div", { class: "controls" }, "Figures over the ", windowSelect, h("span", { class: "muted" }, " · refreshed every 5 s")), body);

  async function refresh() {
    const [health, stats] = await Promise.all([api("GET", "/healthz"), api("GET", `/v1/stats?window_s=${windowSelect.value}`)]);
    if (!current(gen)) return;
    const routes = stats.routes;
    const pick = (name) => routes[name] || { requests: 0, per_s: 0, p50_ms: null, p99_ms: null, errors: 0, per_second: [] };
    const headline = (title, r, id) => h("div", { class: "card stat", id },
      h("div", { class: "muted" }, title), h("div", { class: "big" }, `${fmt(r.per_s, 2)}/s`),
      h("div", {}, `p50 ${fmt(r.p50_ms, 1)} ms · p99 ${fmt(r.p99_ms, 1)} ms`), spark(r.per_second));
    body.replaceChildren(
      h("div", { class: "card" },
        h("dl", { class: "kv", id: "health-facts" },
          h("dt", {}, "status"), h("dd", {}, health.status),
          h("dt", {}, "model version"), h("dd", { id: "health-model" }, h("code", {}, health.model_version)),
          h("dt", {}, "user shards"), h("dd", {}, health.user_shards),
          h("dt", {}, "user states held"), h("dd", {}, h("span", { id: "health-users" }, stats.users),
            stats.user_shards.length > 1 ? ` (${stats.user_shards.map((s) => s.users).join(" + ")}, by shard)` : ""),
          h("dt", {}, "catalogue"), h("dd", { id: "health-items" }, `${stats.store.items} items (${stats.store.hidden_items} hidden)`),
          h("dt", {}, "state store"), h("dd", { id: "health-store" },
            `${stats.store.backend}: item log at ${stats.store.item_log_seq}, event log at ${stats.store.event_log_seq}; `
            + `read in ${fmt(stats.store.read_ms, 2)} ms; Ranker replicas catch up with it `
            + (stats.sync_interval_s > 0 ? `at most every ${stats.sync_interval_s} s` : "on every request")))),
      h("div", { class: "card" }, h("h2", {}, "UserState shards: how far each is behind the store"),
        h("table", { id: "shard-lag" },
          h("thead", {}, h("tr", {}, h("th", {}, "shard"), h("th", { class: "num" }, "users"), h("th", {}, "model"),
            h("th", { class: "num" }, "event log applied"), h("th", { class: "num" }, "events behind"),
            h("th", { class: "num" }, "item log applied"), h("th", { class: "num" }, "items behind"),
            h("th", { class: "num" }, "replayed on start"))),
          h("tbody", {}, stats.user_shards.map((s) => h("tr", {},
            h("td", {}, s.shard), h("td", { class: "num" }, s.users), h("td", {}, h("code", {}, s.model_version || "–")),
            h("td", { class: "num" }, s.event_log_seq), h("td", { class: s.event_lag ? "num behind" : "num" }, s.event_lag),
            h("td", { class: "num" }, s.item_log_seq), h("td", { class: s.item_lag ? "num behind" : "num" }, s.item_lag),
            h("td", { class: "num" }, s.replayed_on_start))))),
        h("p", { class: "muted" }, `The store's event log is at ${stats.store.event_log_seq}. A shard applies its own users' events `
          + "as it writes them; the rest of the log (other shards' events, imports, item changes) reaches its catalogue on "
          + "its next sync: on a request, and in the background every serving.behaviour_refresh_s seconds.")),
      h("div", {}, headline("events (POST /v1/events)", pick("POST /v1/events"), "health-events"),
        headline("recommendations (POST /v1/recommendations)", pick("POST /v1/recommendations"), "health-recommendations")),
      h("div", { class: "card" }, h("h2", {}, `Every route, last ${stats.window_s} s (this Ingress replica)`),
        h("table", { id: "routes" },
          h("thead", {}, h("tr", {}, h("th", {}, "route"), h("th", { class: "num" }, "requests"), h("th", { class: "num" }, "per s"),
            h("th", { class: "num" }, "p50 ms"), h("th", { class: "num" }, "p99 ms"), h("th", { class: "num" }, "errors"), h("th", {}, "per second"))),
          h("tbody", {}, Object.entries(routes).filter(([, r]) => r.requests).sort((a, b) => b[1].requests - a[1].requests).map(([name, r]) => h("tr", {},
            h("td", {}, name), h("td", { class: "num" }, r.requests), h("td", { class: "num" }, fmt(r.per_s, 2)),
            h("td", { class: "num" }, fmt(r.p50_ms, 1)), h("td", { class: "num" }, fmt(r.p99_ms, 1)),
            h("td", { class: "num" }, r.errors), h("td", {}, spark(r.per_second))))))));
  }
  await refresh();
  refreshTimer = setInterval(() => refresh().catch((e) => say(e.message)), 5000);
}

function spark(series) {
  const top = Math.max(1, ...series);
  const points = series.map((n, i) => `${(i / Math.max(1, series.length - 1)) * 160},${27 - (n / top) * 25}`).join(" ");
  return h("svg", { class: "spark", viewBox: "0 0 160 28" }, h("polyline", { points }));
}

// ---- start ----------------------------------------------------------------------------------
$("#key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey = $("#api-key").value.trim();
  if (apiKey) sessionStorage.setItem(KEY_STORE, apiKey);
  else sessionStorage.removeItem(KEY_STORE);
  showKeyState();
  route();
});
$("#key-forget").addEventListener("click", () => {
  apiKey = "";
  sessionStorage.removeItem(KEY_STORE);
  showKeyState();
  route();
});
window.addEventListener("hashchange", route);
showKeyState();
route();
