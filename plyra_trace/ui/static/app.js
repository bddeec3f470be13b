// plyra-trace web UI: hash routes, pages, live updates from the collector's SSE stream.
// Everything that comes from spans is rendered as text (see dom.js); nothing is parsed as HTML.
import { api, append, clear, el, fmtCost, fmtDuration, fmtInt, fmtTime, kindBadge, KINDS, liveBadge, signIn, signOut } from "./dom.js";
import { Flamegraph } from "./flame.js";
import { drawGraph } from "./graph.js";
import { guardsPage, sessionGuards } from "./guards.js";
import { Waterfall } from "./waterfall.js";

const view = document.getElementById("view");
const WINDOWS = [["15m", "15 min"], ["1h", "1 hour"], ["24h", "24 hours"], ["7d", "7 days"], ["30d", "30 days"], ["", "all time"]];

// ---- theme --------------------------------------------------------------------------------------
function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  document.getElementById("theme").textContent = theme === "dark" ? "☀ light" : "☾ dark";
}
applyTheme(localStorage.getItem("plyra-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
document.getElementById("theme").addEventListener("click", () => {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem("plyra-theme", next);
  applyTheme(next);
  window.dispatchEvent(new Event("resize"));
});

// ---- live stream (SSE, polling fallback) ---------------------------------------------------------
const listeners = new Set();
let pollTimer = null;
let source = null;
function emit(kind, data) {
  for (const listener of [...listeners]) listener(kind, data);
}
function connectStream() {
  const live = document.getElementById("live");
  if (source) source.close();
  clearInterval(pollTimer);
  pollTimer = null;
  if (!window.EventSource) return startPolling();
  // Same origin: a signed-in browser's session cookie authenticates the stream (no key in URLs).
  const stream = new EventSource("/api/v1/stream");
  source = stream;
  stream.addEventListener("ready", () => {
    live.textContent = "live";
    live.classList.add("on");
    document.body.dataset.live = "on";
  });
  // One coalesced update at a time: the latest summary of each changed trace and edge.
  stream.addEventListener("update", (event) => {
    let data = {};
    try {
      data = JSON.parse(event.data);
    } catch {
      return; /* ignore a malformed event */
    }
    if (data.spans) emit("spans", { count: data.spans });
    for (const trace of data.traces || []) emit("trace", trace);
    for (const edge of data.edges || []) emit("edge", edge);
    if (data.truncated) emit("poll", {});
  });
  stream.addEventListener("error", () => {
    live.classList.remove("on");
    live.textContent = stream.readyState === EventSource.CLOSED ? "polling" : "reconnecting";
    if (stream.readyState === EventSource.CLOSED) startPolling();
  });
}
function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(() => emit("poll", {}), 5000);
}

/** Call fn when the stream reports changes (at most once per `wait` ms), until the page changes.
 *  A throttle, not a debounce: under continuous ingest the view still refreshes. */
function onLive(fn, kinds = ["trace", "edge", "poll"], wait = 1000) {
  let timer = null;
  const listener = (kind) => {
    if (!kinds.includes(kind) || timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, wait);
  };
  listeners.add(listener);
  cleanups.push(() => {
    listeners.delete(listener);
    clearTimeout(timer);
  });
}

// ---- routing ------------------------------------------------------------------------------------
let cleanups = [];
function parseHash() {
  const hash = window.location.hash.replace(/^#/, "") || "/traces";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}
export function href(path, params) {
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString() : "";
  return `#${path}${query ? `?${query}` : ""}`;
}
function link(path, params, ...children) {
  return el("a", { href: href(path, params) }, ...children);
}
function navigateQuiet(path, params) {
  // Reflect page state in the URL (shareable) without adding a history entry.
  history.replaceState(null, "", href(path, params));
}

const PAGES = { traces: tracesPage, trace: tracePage, agents: agentsPage, flame: flamePage, cost: costPage, guards: (_parts, params) => guardsPage(view, params, { href, link, table, windowSelect, onLive }), sessions: sessionsPage, session: sessionPage };

async function route() {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
  const { parts, params } = parseHash();
  const page = PAGES[parts[0]] ? parts[0] : "traces";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page || (page === "trace" && a.dataset.page === "traces") || (page === "session" && a.dataset.page === "sessions"));
  clear(view);
  view.dataset.page = page;
  try {
    await PAGES[page](parts.slice(1), params);
  } catch (error) {
    if (error.status === 401) view.append(keyForm(error.message));
    else view.append(el("p", { class: "error-box" }, `Could not load: ${error.message}`));
  }
}
window.addEventListener("hashchange", route);

/** This collector requires API keys: ask for one once and exchange it for a session cookie
 *  (HttpOnly: the page never stores the key, in the URL or in browser storage). */
function keyForm(reason) {
  const input = el("input", { type: "password", placeholder: "plyra API key", "aria-label": "API key", size: 40, autocomplete: "off" });
  const message = el("span", { class: "error-box" }, `${reason}.`);
  const form = el("form", { class: "filters key-form" }, message, input, el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    input.value = "";
    try {
      await signIn(key);
    } catch (error) {
      message.textContent = `${error.message}.`;
      return;
    }
    showSignOut(true);
    connectStream();
    route();
  });
  return form;
}

function showSignOut(signedIn) {
  document.getElementById("signout").hidden = !signedIn;
}
document.getElementById("signout").addEventListener("click", async () => {
  await signOut().catch(() => null);
  window.location.reload();
});
api("/api/v1/session")
  .then((state) => showSignOut(state.signed_in))
  .catch(() => null);

// ---- shared bits --------------------------------------------------------------------------------
function windowSelect(value, onChange) {
  const select = el("select", { "aria-label": "time window" }, WINDOWS.map(([v, label]) => el("option", { value: v, selected: v === value }, label)));
  select.addEventListener("change", () => onChange(select.value));
  return select;
}
function statusBadge(status) {
  return el("span", { class: `status status-${status}` }, status);
}
/** Agent/service chips; each links to the trace list filtered by it. */
function tags(values, cls) {
  const filter = cls === "agent-tag" ? "agent" : "service";
  return (values || []).map((v) => el("a", { class: cls, href: href("/traces", { [filter]: v }), title: `traces with ${filter} ${v}` }, v));
}
function traceCost(t) {
  return fmtCost(t.cost, t.unpriced_count);
}
const NUMERIC = new Set(["#", "Duration", "Spans", "Tokens", "Cost", "Traces", "Errors", "LLM calls", "traces", "input", "output", "tokens", "cost (USD)", "unpriced"]);
function th(h) {
  return el("th", { class: NUMERIC.has(h) ? "num" : null }, h);
}
function table(headers, rows, cls = "") {
  return el("table", { class: `grid ${cls}` }, el("thead", null, el("tr", null, headers.map(th))), el("tbody", null, rows));
}

// ---- tail sampling (docs/sampling.md) -------------------------------------------------------------
const SAMPLED_OUT = "spans not kept by tail sampling; the summary, tokens and cost are exact";
/** A marker for a trace whose spans were sampled out, or why a sampled trace was kept. */
function samplingMark(t) {
  if (t.sampled === false) return el("span", { class: "sampled-out", title: SAMPLED_OUT }, "sampled out");
  if (t.kept_because && t.kept_because.length) return el("span", { class: "kept-because", title: "kept by tail sampling because" }, `kept: ${t.kept_because.join(", ")}`);
  return null;
}
function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = Math.max(0, n || 0);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}
/** Kept, dropped and pending counts and the storage freed; empty while sampling never ran. */
async function samplingPanel() {
  const s = await api("/api/v1/sampling");
  if (!s.policy.active && !s.kept && !s.dropped && !s.pending) return null;
  const rate = s.policy.active ? `ordinary traces kept at ${s.policy.sample_rate}` : "sampling off";
  return el(
    "div",
    { class: "sampling-panel", "aria-label": "tail sampling" },
    el("strong", null, "Tail sampling"),
    el("span", null, rate),
    el("span", { dataset: { count: "kept" } }, `${fmtInt(s.kept)} kept`),
    el("span", { dataset: { count: "dropped" } }, `${fmtInt(s.dropped)} sampled out`),
    el("span", { dataset: { count: "pending" } }, `${fmtInt(s.pending)} deciding`),
    el("span", { title: "estimate of span rows and payloads removed" }, `${fmtBytes(s.bytes_saved)} saved`),
  );
}

function traceRow(t) {
  const open = () => (window.location.hash = href(`/trace/${t.trace_id}`));
  return el(
    "tr",
    { class: `clickable${t.status === "error" ? " error" : ""}`, dataset: { traceId: t.trace_id, sampled: String(t.sampled) }, on: { click: (e) => { if (e.target.tagName !== "A") open(); } } },
    el("td", { class: "nowrap" }, fmtTime(t.start_ns)),
    el("td", null, link(`/trace/${t.trace_id}`, null, t.root_name), t.complete ? null : el("span", { class: "muted", title: "root span not received yet" }, " (partial)"), t.sampled === false ? samplingMark(t) : null),
    el("td", { class: "nowrap" }, statusBadge(t.status), liveBadge(t)),
    el("td", { class: "num" }, fmtDuration(t.duration_ns)),
    el("td", { class: "num" }, fmtInt(t.span_count)),
    el("td", { class: "num" }, fmtInt(t.total_tokens)),
    el("td", { class: "num" }, traceCost(t)),
    el("td", null, tags(t.agents, "agent-tag")),
    el("td", null, tags(t.services, "svc")),
  );
}
const TRACE_HEADERS = ["Start", "Root", "Status", "Duration", "Spans", "Tokens", "Cost", "Agents", "Services"];

// ---- Traces -------------------------------------------------------------------------------------
const FILTERS = [["q", "search names"], ["service", "service"], ["agent", "agent"], ["session", "session"], ["user", "user"], ["guard_policy", "guard policy"], ["guard_action", "guard action"], ["min_duration_ms", "min ms"], ["min_cost", "min $"]];

async function tracesPage(_parts, params) {
  const state = Object.fromEntries(params.entries());
  const form = el("form", { class: "filters", on: { submit: (e) => { e.preventDefault(); apply(); } } });
  const inputs = {};
  for (const [name, placeholder] of FILTERS) {
    inputs[name] = el("input", { name, placeholder, "aria-label": placeholder, value: state[name] || "", size: name.startsWith("min") ? 6 : 12 });
    form.append(inputs[name]);
  }
  inputs.status = el("select", { name: "status", "aria-label": "status" }, [["", "any status"], ["ok", "ok"], ["error", "error"]].map(([v, l]) => el("option", { value: v, selected: state.status === v }, l)));
  inputs.state = el("select", { name: "state", "aria-label": "running state" }, [["", "any state"], ["running", "running"], ["abandoned", "never finished"]].map(([v, l]) => el("option", { value: v, selected: state.state === v }, l)));
  inputs.last = windowSelect(state.last || "", () => apply());
  form.append(inputs.status, inputs.state, inputs.last, el("button", { type: "submit" }, "Filter"));
  const tbody = el("tbody");
  const more = el("button", { type: "button", class: "more", hidden: true }, "Load more");
  const count = el("span", { class: "muted" });
  const sampling = el("div");
  view.append(el("h1", null, "Traces ", count), sampling, form, el("table", { class: "grid traces" }, el("thead", null, el("tr", null, TRACE_HEADERS.map(th))), tbody), more);

  let cursor = null;
  function filters() {
    const f = {};
    for (const [name, input] of Object.entries(inputs)) if (input.value) f[name] = input.value;
    return f;
  }
  function apply() {
    const f = filters();
    window.location.hash = href("/traces", f);
  }
  async function load(append_ = false) {
    const { state: running, ...query } = filters();
    if (running) query[running] = "true"; // running=true or abandoned=true
    const page = await api("/api/v1/traces", { ...query, limit: 50, cursor: append_ ? cursor : null });
    if (!append_) clear(tbody);
    for (const t of page.items) tbody.append(traceRow(t));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    count.textContent = `${tbody.children.length}${cursor ? "+" : ""}`;
    if (!tbody.children.length) tbody.append(el("tr", null, el("td", { colspan: "9", class: "muted" }, "No traces yet. Point plyra_trace.init(endpoint=...) at this collector.")));
    clear(sampling);
    append(sampling, [await samplingPanel()]);
  }
  more.addEventListener("click", () => load(true));
  await load();
  // Live: refresh the first page when traces change (only while the user has not paged further).
  onLive(() => {
    if (!cursor || tbody.children.length <= 50) load();
  }, ["trace", "poll"]);
}

// ---- Trace --------------------------------------------------------------------------------------
async function tracePage(parts, params) {
  const traceId = parts[0];
  const tab = params.get("view") === "flame" ? "flame" : "waterfall";
  const started = performance.now();
  const trace = await api(`/api/v1/traces/${encodeURIComponent(traceId)}`);
  const summary = el(
    "div",
    { class: "summary" },
    statusBadge(trace.status),
    liveBadge(trace),
    el("span", null, fmtTime(trace.start_ns)),
    el("span", null, `duration ${fmtDuration(trace.duration_ns)}`),
    el("span", null, `${fmtInt(trace.span_count)} spans`),
    el("span", null, `${fmtInt(trace.total_tokens)} tokens`),
    el("span", null, `cost ${traceCost(trace)}`),
    trace.session_id ? link(`/session/${encodeURIComponent(trace.session_id)}`, null, `session ${trace.session_id}`) : null,
    trace.user_id ? el("span", null, `user ${trace.user_id}`) : null,
    tags(trace.agents, "agent-tag"),
    tags(trace.services, "svc"),
    samplingMark(trace),
  );
  if (trace.sampled === false) {
    const note = "The span details of this trace were sampled out by the collector's tail sampling. Its summary, tokens and cost above are exact; the agents graph and cost pages count it.";
    view.append(el("h1", { class: "trace-title" }, trace.root_name), summary, el("p", { class: "sampled-note" }, note));
    return;
  }
  const tabs = el(
    "div",
    { class: "tabs", role: "tablist" },
    link(`/trace/${traceId}`, { span: params.get("span") }, "Waterfall"),
    link(`/trace/${traceId}`, { view: "flame", span: params.get("span") }, "Flamegraph"),
  );
  tabs.children[tab === "flame" ? 1 : 0].classList.add("active");
  const legend = el("div", { class: "legend" }, KINDS.filter((k) => trace.spans.some((s) => s.kind === k)).map((k) => kindBadge(k)));
  const main = el("div", { class: "trace-main" });
  const panel = el("aside", { class: "panel", "aria-label": "span details" }, el("p", { class: "muted" }, "Select a span to see its input, output, attributes and events."));
  view.append(el("h1", { class: "trace-title" }, trace.root_name), summary, el("div", { class: "tabbar" }, tabs, legend), el("div", { class: "split" }, main, panel));

  const showSpan = async (span) => {
    if (!span) return;
    navigateQuiet(`/trace/${traceId}`, { view: tab === "flame" ? "flame" : null, span: span.span_id });
    await renderPanel(panel, traceId, span);
  };
  if (tab === "waterfall") {
    const waterfall = new Waterfall(main, trace, { onSelect: showSpan });
    cleanups.push(() => waterfall.destroy());
    const found = el("span", { class: "muted wf-found" });
    const search = el("input", { type: "search", class: "wf-search", placeholder: "find span (Enter: next)", "aria-label": "find span" });
    search.addEventListener("input", () => {
      const count = waterfall.highlight(search.value);
      found.textContent = search.value.trim() ? `${fmtInt(count)} match(es)` : "";
    });
    search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      waterfall.next();
    });
    tabs.after(el("div", { class: "wf-find" }, search, found));
    const wanted = params.get("span");
    if (wanted && trace.spans.some((s) => s.span_id === wanted)) waterfall.select(wanted, true);
  } else {
    const weight = params.get("weight") || "duration";
    const picker = weightPicker(weight, (w) => (window.location.hash = href(`/trace/${traceId}`, { view: "flame", weight: w })));
    main.append(picker);
    const flame = new Flamegraph(main, { format: formatter(weight) });
    cleanups.push(() => flame.destroy());
    const data = await api(`/api/v1/traces/${encodeURIComponent(traceId)}/flamegraph`, { weight });
    flame.setData(data.root);
  }
  view.dataset.renderMs = String(Math.round(performance.now() - started));
  // Spans of this trace still arriving (late services, long runs): redraw when it changes.
  let refresh = null;
  const open = trace.spans.filter((s) => s.end_ns === null).length;
  const onTrace = (kind, data) => {
    if (kind !== "trace" || !data || data.trace_id !== traceId || refresh) return;
    // Unchanged unless spans finished, the trace grew, or spans started running (live spans).
    const started = data.running_spans !== undefined && data.running_spans !== open;
    if (data.span_count === trace.span_count && data.end_ns === trace.end_ns && !started) return;
    refresh = setTimeout(route, 1000);
  };
  listeners.add(onTrace);
  cleanups.push(() => {
    listeners.delete(onTrace);
    clearTimeout(refresh);
  });
}

function weightPicker(weight, onChange) {
  const select = el("select", { "aria-label": "weight" }, [["duration", "time"], ["cost", "cost"], ["tokens", "tokens"]].map(([v, l]) => el("option", { value: v, selected: v === weight }, `weight: ${l}`)));
  select.addEventListener("change", () => onChange(select.value));
  return select;
}
function formatter(weight) {
  if (weight === "cost") return (v) => (v ? `$${v.toPrecision(3)}` : "$0");
  if (weight === "tokens") return (v) => `${fmtInt(Math.round(v))} tokens`;
  return (v) => fmtDuration(v);
}

function kv(rows) {
  return el("dl", { class: "kv" }, rows.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [el("dt", null, k), el("dd", null, v instanceof Node ? v : String(v))]));
}

/** Pretty JSON when the value parses, the raw text otherwise; long values fold. */
function valueBlock(title, value, mime) {
  if (value === null || value === undefined) return null;
  let text = String(value);
  if (!mime || mime.includes("json")) {
    try {
      text = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      /* keep the raw text */
    }
  }
  const LIMIT = 4000;
  const pre = el("pre", { class: "value" }, text.length > LIMIT ? text.slice(0, LIMIT) : text);
  const section = el("section", { class: `io io-${title.toLowerCase()}` }, el("h3", null, title, el("span", { class: "muted" }, ` ${fmtInt(text.length)} chars`)), pre);
  if (text.length > LIMIT) {
    const button = el("button", { type: "button", class: "expand" }, `Show all (${fmtInt(text.length)} chars)`);
    button.addEventListener("click", () => {
      pre.textContent = text;
      button.remove();
    });
    section.append(button);
  }
  return section;
}

async function renderPanel(panel, traceId, hot) {
  clear(panel).append(el("p", { class: "muted" }, "Loading…"));
  const span = await api(`/api/v1/traces/${encodeURIComponent(traceId)}/spans/${encodeURIComponent(hot.span_id)}`);
  const attrs = span.attributes || {};
  clear(panel);
  panel.append(
    el("h2", { class: "span-title" }, kindBadge(span.kind), " ", span.name),
    kv([
      ["status", span.status === 2 ? `error ${span.status_message || ""}` : span.status === 1 ? "ok" : "unset"],
      ["duration", span.end_ns === null ? `${fmtDuration(span.duration_ns)} so far` : fmtDuration(span.duration_ns)],
      ["state", span.abandoned ? `never finished (heartbeats stopped; last ${fmtTime(span.last_heartbeat_ns)})` : span.running ? "running" : null],
      ["start", fmtTime(span.start_ns)],
      ["service", span.service],
      ["agent", span.agent],
      ["span id", span.span_id],
    ]),
  );
  const guardKeys = Object.keys(attrs).filter((k) => k.startsWith("guard."));
  if (span.kind === "GUARD" || guardKeys.length) {
    const triggered = attrs["guard.triggered"] === true || attrs["guard.triggered"] === "true";
    panel.append(
      el(
        "section",
        { class: `guard ${triggered ? "triggered" : "passed"}` },
        el("h3", null, "Guard decision"),
        el("div", { class: "guard-action" }, String(attrs["guard.action"] ?? "–").toUpperCase(), triggered ? " · triggered" : " · not triggered"),
        kv([
          ["policy", attrs["guard.policy"]],
          ["action", attrs["guard.action"]],
          ["triggered", attrs["guard.triggered"] === undefined ? undefined : String(triggered)],
          ["confidence", attrs["guard.confidence"]],
          ["guard", attrs["guard.name"]],
          ["provider", attrs["guard.provider"]],
          ["details", attrs["guard.details"]],
        ]),
      ),
    );
  }
  if (span.handoff_from || span.handoff_to) {
    panel.append(el("section", { class: "handoff-box" }, el("h3", null, "Handoff"), kv([["from", span.handoff_from], ["to", span.handoff_to], ["protocol", span.handoff_protocol], ["reason", attrs["agent.handoff.reason"]]])));
  }
  if (span.model || span.total_tokens !== null) {
    panel.append(
      el(
        "section",
        { class: "llm-box" },
        el("h3", null, "Model usage"),
        kv([
          ["model", span.model],
          ["provider", span.provider],
          ["input tokens", fmtInt(span.input_tokens)],
          ["output tokens", fmtInt(span.output_tokens)],
          ["cache read", span.cache_read_tokens ? fmtInt(span.cache_read_tokens) : null],
          ["cache write", span.cache_write_tokens ? fmtInt(span.cache_write_tokens) : null],
          ["cost", span.cost === null ? (span.model ? "unpriced" : "–") : fmtCost(span.cost, 0)],
        ]),
      ),
    );
  }
  const events = span.events || [];
  const exceptions = events.filter((e) => e.name === "exception");
  for (const ex of exceptions) {
    const a = ex.attributes || {};
    panel.append(el("section", { class: "exception" }, el("h3", null, "Exception"), el("div", { class: "ex-type" }, `${a["exception.type"] || "error"}: ${a["exception.message"] || ""}`), a["exception.stacktrace"] ? el("pre", { class: "value" }, a["exception.stacktrace"]) : null));
  }
  append(panel, [valueBlock("Input", span.input_value, span.input_mime), valueBlock("Output", span.output_value, span.output_mime)]);
  const keys = Object.keys(attrs).sort();
  panel.append(el("section", null, el("h3", null, `Attributes (${keys.length})`), table(["key", "value"], keys.map((k) => el("tr", null, el("td", { class: "key" }, k), el("td", null, typeof attrs[k] === "object" ? JSON.stringify(attrs[k]) : String(attrs[k])))), "attrs")));
  const others = events.filter((e) => e.name !== "exception");
  if (others.length) {
    panel.append(el("section", null, el("h3", null, `Events (${others.length})`), others.map((e) => el("div", { class: "event" }, el("strong", null, e.name), " ", el("span", { class: "muted" }, fmtTime(e.time_ns || e.timestamp_ns || e.time_unix_nano)), el("pre", { class: "value" }, JSON.stringify(e.attributes || {}, null, 2))))));
  }
  const resource = span.resource || {};
  if (Object.keys(resource).length) {
    panel.append(el("details", null, el("summary", null, "Resource"), el("pre", { class: "value" }, JSON.stringify(resource, null, 2))));
  }
}

// ---- Agents -------------------------------------------------------------------------------------
async function agentsPage(_parts, params) {
  let last = params.has("last") ? params.get("last") : "24h";
  if (last === "all") last = "";
  const selectedParam = params.get("agent") ? { type: "node", id: params.get("agent") } : params.get("from") ? { type: "edge", from: params.get("from"), to: params.get("to"), protocol: params.get("protocol") } : null;
  let selected = selectedParam;
  const svgRoot = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svgRoot.setAttribute("class", "agents-graph");
  const list = el("div", { class: "agent-traces" });
  const info = el("span", { class: "muted" });
  view.append(el("h1", null, "Agents ", info), el("div", { class: "filters" }, windowSelect(last, (v) => { last = v; sync(); load(); })), el("div", { class: "graph-wrap" }, svgRoot), list);

  function sync() {
    const s = selected || {};
    navigateQuiet("/agents", { last: last || "all", agent: s.type === "node" ? s.id : null, from: s.from, to: s.to, protocol: s.protocol });
  }
  async function load() {
    const graph = await api("/api/v1/agents/graph", { last });
    info.textContent = `${graph.nodes.length} agents · ${graph.edges.length} handoff edges`;
    drawGraph(svgRoot, graph, { onNode: (id) => select({ type: "node", id }), onEdge: (e) => select({ type: "edge", from: e.from, to: e.to, protocol: e.protocol }), selected });
    if (!graph.nodes.length) list.replaceChildren(el("p", { class: "muted" }, "No agents in this window yet."));
  }
  async function select(s) {
    selected = s;
    sync();
    await load();
    await showTraces();
  }
  async function showTraces() {
    if (!selected) return;
    const agent = selected.type === "node" ? selected.id : selected.to;
    const page = await api("/api/v1/traces", { agent, last, limit: 100 });
    let items = page.items;
    if (selected.type === "edge") items = items.filter((t) => (t.agents || []).includes(selected.from));
    const title = selected.type === "node" ? `Traces with agent ${selected.id}` : `Traces with handoff ${selected.from} → ${selected.to} (${selected.protocol})`;
    list.replaceChildren(el("h2", null, title), table(TRACE_HEADERS, items.map(traceRow), "traces"), el("p", null, link("/flame", { agent }, `Flamegraph of ${agent} across traces →`)));
  }
  await load();
  if (selected) await showTraces();
  onLive(() => load().then(() => (selected ? showTraces() : null)), ["edge", "trace", "poll"], 1500);
}

// ---- Flamegraph across traces ---------------------------------------------------------------------
async function flamePage(_parts, params) {
  const state = { root_name: params.get("root_name") || "", agent: params.get("agent") || "", weight: params.get("weight") || "duration", last: params.get("last") || "" };
  const [recent, graph] = await Promise.all([api("/api/v1/traces", { limit: 200 }), api("/api/v1/agents/graph")]);
  const roots = [...new Set(recent.items.map((t) => t.root_name))];
  const rootList = el("datalist", { id: "roots" }, roots.map((r) => el("option", { value: r })));
  const agentList = el("datalist", { id: "agents" }, graph.nodes.map((n) => el("option", { value: n.id })));
  const rootInput = el("input", { list: "roots", placeholder: "root span name", "aria-label": "root span name", value: state.root_name });
  const agentInput = el("input", { list: "agents", placeholder: "agent", "aria-label": "agent", value: state.agent });
  const weight = weightPicker(state.weight, () => go());
  const win = windowSelect(state.last, () => go());
  const form = el("form", { class: "filters", on: { submit: (e) => { e.preventDefault(); go(); } } }, rootList, agentList, rootInput, agentInput, weight, win, el("button", { type: "submit" }, "Show"));
  const status = el("p", { class: "muted flame-status" });
  const holder = el("div", { class: "flame-holder" });
  view.append(el("h1", null, "Flamegraph across traces"), el("p", { class: "muted" }, "Where time, cost or tokens go across every trace of a root span or an agent. Click a frame to zoom."), form, status, holder);
  function go() {
    window.location.hash = href("/flame", { root_name: rootInput.value, agent: agentInput.value, weight: weight.value, last: win.value });
  }
  if (!state.root_name && !state.agent) {
    if (!roots.length) {
      status.textContent = "No traces yet.";
      return;
    }
    // Open on the most recent root (the newest trace's), and say so in the URL (shareable).
    state.root_name = rootInput.value = roots[0];
    navigateQuiet("/flame", { root_name: state.root_name, weight: state.weight, last: state.last });
  }
  const data = await api("/api/v1/flamegraph", { root_name: state.root_name, agent: state.agent, weight: state.weight, last: state.last });
  status.textContent = `${data.traces} trace(s) merged by span path, weighted by ${state.weight}.`;
  const others = roots.filter((r) => r !== state.root_name).slice(0, 8);
  if (others.length) {
    const switcher = el("p", { class: "muted recent-roots" }, "Other recent roots: ");
    for (const r of others) switcher.append(link("/flame", { root_name: r, weight: state.weight, last: state.last }, r), " ");
    status.after(switcher);
  }
  const flame = new Flamegraph(holder, { format: formatter(state.weight) });
  cleanups.push(() => flame.destroy());
  flame.setData(data.root);
}

// ---- Cost ---------------------------------------------------------------------------------------
const DIMENSIONS = ["model", "agent", "session", "user", "day", "service", "project"];

async function costPage(_parts, params) {
  const by = DIMENSIONS.includes(params.get("by")) ? params.get("by") : "model";
  const last = params.get("last") || "";
  const tabs = el("div", { class: "tabs" }, DIMENSIONS.map((d) => link("/cost", { by: d, last }, `by ${d}`)));
  tabs.children[DIMENSIONS.indexOf(by)].classList.add("active");
  const data = await api("/api/v1/cost", { by, last, limit: 200 });
  let items = data.items;
  if (by === "day") items = [...items].sort((a, b) => String(a.key).localeCompare(String(b.key)));
  const priced = items.filter((i) => i.cost !== null && i.cost !== undefined);
  const total = priced.reduce((s, i) => s + i.cost, 0);
  const tokens = items.reduce((s, i) => s + (i.total_tokens || 0), 0);
  const unpriced = items.reduce((s, i) => s + (i.unpriced || 0), 0);
  const totals = el("div", { class: "summary cost-totals" }, el("span", { class: "total-cost", dataset: { total: String(total) } }, `total ${priced.length ? fmtCost(total, 0) : "–"}`), el("span", { class: "total-tokens", dataset: { tokens: String(tokens) } }, `${fmtInt(tokens)} tokens`), unpriced ? el("span", { class: "unpriced" }, `${fmtInt(unpriced)} unpriced call(s)`) : null);
  const canvas = el("canvas", { class: "cost-chart", role: "img", "aria-label": `cost by ${by}` });
  const rows = items.map((i) =>
    el(
      "tr",
      { dataset: { key: String(i.key) } },
      el("td", null, dimensionLink(by, i.key)),
      el("td", { class: "num" }, fmtInt(i.calls ?? i.traces)),
      el("td", { class: "num" }, fmtInt(i.input_tokens)),
      el("td", { class: "num" }, fmtInt(i.output_tokens)),
      el("td", { class: "num" }, fmtInt(i.total_tokens)),
      el("td", { class: `num cost${i.cost === null ? " unpriced" : ""}` }, i.cost === null ? "unpriced" : fmtCost(i.cost, 0)),
      el("td", { class: "num" }, i.unpriced ? fmtInt(i.unpriced) : ""),
    ),
  );
  view.append(el("h1", null, "Cost"), el("div", { class: "filters" }, tabs, windowSelect(last, (v) => (window.location.hash = href("/cost", { by, last: v })))), totals, el("div", { class: "chart-wrap" }, canvas), table([by, by in { model: 1, agent: 1, day: 1, service: 1, project: 1 } ? "LLM calls" : "traces", "input", "output", "tokens", "cost (USD)", "unpriced"], rows, "cost-table"));
  drawBars(canvas, items, by === "day");
  const redraw = () => drawBars(canvas, items, by === "day");
  window.addEventListener("resize", redraw);
  cleanups.push(() => window.removeEventListener("resize", redraw));
}
function dimensionLink(by, key) {
  if (key === null || key === undefined) return el("span", { class: "muted" }, "(none)");
  if (by === "session") return link(`/session/${encodeURIComponent(key)}`, null, String(key));
  if (by === "agent") return link("/agents", { agent: key }, String(key));
  if (by === "trace") return link(`/trace/${key}`, null, String(key));
  return String(key);
}

/** Bar chart of cost per key on canvas; unpriced keys get a hatched stub labelled "unpriced". */
function drawBars(canvas, items, vertical) {
  const width = Math.max(300, canvas.parentElement.clientWidth);
  const shown = items.slice(0, vertical ? 60 : 15);
  const max = Math.max(1e-12, ...shown.map((i) => i.cost || 0));
  const styles = getComputedStyle(document.documentElement);
  const fg = styles.getPropertyValue("--fg").trim();
  const accent = styles.getPropertyValue("--accent").trim();
  const muted = styles.getPropertyValue("--muted").trim();
  const height = vertical ? 220 : Math.max(60, shown.length * 24 + 10);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  if (!shown.length) {
    ctx.fillStyle = muted;
    ctx.fillText("No LLM usage in this window.", 10, 20);
    return;
  }
  if (vertical) {
    const slot = (width - 20) / shown.length;
    shown.forEach((item, i) => {
      const h = item.cost ? ((height - 50) * item.cost) / max : 3;
      ctx.fillStyle = item.cost === null ? muted : accent;
      ctx.fillRect(10 + i * slot + 2, height - 30 - h, Math.max(2, slot - 4), h);
      ctx.fillStyle = fg;
      if (slot > 60 || i % Math.ceil(60 / slot) === 0) ctx.fillText(String(item.key).slice(5), 10 + i * slot, height - 15);
    });
    return;
  }
  const labelW = Math.min(220, width * 0.3);
  shown.forEach((item, i) => {
    const y = 5 + i * 24;
    ctx.fillStyle = fg;
    const label = String(item.key ?? "(none)");
    ctx.fillText(label.length > 30 ? `${label.slice(0, 29)}…` : label, 4, y + 10);
    const w = item.cost ? ((width - labelW - 120) * item.cost) / max : 0;
    ctx.fillStyle = accent;
    ctx.fillRect(labelW, y, Math.max(item.cost ? 2 : 0, w), 18);
    ctx.fillStyle = item.cost === null ? muted : fg;
    ctx.fillText(item.cost === null ? "unpriced" : fmtCost(item.cost, 0), labelW + w + 6, y + 10);
  });
}

// ---- Sessions -----------------------------------------------------------------------------------
async function sessionsPage(_parts, params) {
  const last = params.get("last") || "";
  const tbody = el("tbody");
  const more = el("button", { type: "button", class: "more", hidden: true }, "Load more");
  view.append(el("h1", null, "Sessions"), el("div", { class: "filters" }, windowSelect(last, (v) => (window.location.hash = href("/sessions", { last: v })))), el("table", { class: "grid sessions" }, el("thead", null, el("tr", null, ["Session", "Users", "Traces", "Spans", "Errors", "Tokens", "Cost", "First", "Last"].map(th))), tbody), more);
  let cursor = null;
  async function load(next = false) {
    const page = await api("/api/v1/sessions", { last, cursor: next ? cursor : null, limit: 50 });
    if (!next) clear(tbody);
    for (const s of page.items) {
      tbody.append(
        el(
          "tr",
          { dataset: { session: s.session_id } },
          el("td", null, link(`/session/${encodeURIComponent(s.session_id)}`, null, s.session_id)),
          el("td", { class: "users" }, userLinks(s.users || (s.user_id ? [s.user_id] : []))),
          el("td", { class: "num" }, fmtInt(s.traces)),
          el("td", { class: "num" }, fmtInt(s.spans)),
          el("td", { class: "num" }, fmtInt(s.errors)),
          el("td", { class: "num" }, fmtInt(s.total_tokens)),
          el("td", { class: "num" }, fmtCost(s.cost, s.unpriced)),
          el("td", { class: "nowrap" }, fmtTime(s.first_ns)),
          el("td", { class: "nowrap" }, fmtTime(s.last_start_ns)),
        ),
      );
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (!tbody.children.length) tbody.append(el("tr", null, el("td", { colspan: "9", class: "muted" }, "No sessions yet. Wrap work in plyra_trace.session(...).")));
  }
  more.addEventListener("click", () => load(true));
  await load();
  onLive(() => (cursor ? null : load()), ["trace", "poll"], 1500);
}

/** A session's users, each linking to the trace list filtered by that user. */
function userLinks(users) {
  return users.flatMap((u, i) => [i ? ", " : null, link("/traces", { user: u }, u)]);
}

async function sessionPage(parts) {
  const sessionId = parts[0];
  const items = [];
  let cursor = null;
  do {
    const page = await api(`/api/v1/sessions/${encodeURIComponent(sessionId)}`, { cursor, limit: 500 });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 5000);
  items.sort((a, b) => a.start_ns - b.start_ns);
  const priced = items.filter((t) => t.cost !== null);
  const cost = priced.reduce((s, t) => s + t.cost, 0);
  const unpriced = items.reduce((s, t) => s + (t.unpriced_count || 0), 0);
  const tokens = items.reduce((s, t) => s + (t.total_tokens || 0), 0);
  const users = [...new Set(items.map((t) => t.user_id).filter(Boolean))];
  view.append(
    el("h1", null, "Session ", el("span", { class: "mono" }, sessionId)),
    el("div", { class: "summary session-totals" }, el("span", null, `${items.length} traces`), el("span", { class: "total-tokens" }, `${fmtInt(tokens)} tokens`), el("span", { class: "total-cost" }, `cost ${priced.length ? fmtCost(cost, unpriced) : unpriced ? "unpriced" : "–"}`), users.length ? el("span", { class: "users" }, users.length > 1 ? "users " : "user ", userLinks(users)) : null, items.length ? el("span", null, `${fmtTime(items[0].start_ns)} → ${fmtTime(items[items.length - 1].end_ns)}`) : null),
    el("p", { class: "muted" }, "Traces in the order they started."),
    table(["#", ...TRACE_HEADERS], items.map((t, i) => {
      const row = traceRow(t);
      row.prepend(el("td", { class: "num" }, String(i + 1)));
      return row;
    }), "traces"),
  );
  append(view, [await sessionGuards(sessionId, { link })]);
}

connectStream();
route();
