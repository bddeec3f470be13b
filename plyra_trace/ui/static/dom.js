// DOM helpers: every value is set as text or as a property, never parsed as HTML.

/** Create an element; attrs set via setAttribute (on*-attributes refused), children as text. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  applyAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an SVG element with the same rules as el(). */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  applyAttrs(node, attrs);
  append(node, children);
  return node;
}

function applyAttrs(node, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === "style") {
      Object.assign(node.style, value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key.toLowerCase().startsWith("on")) {
      throw new Error("event handler attributes are not allowed");
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** Append children: nodes as they are, everything else as a text node. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Remove every child of node. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// ---- formatting ---------------------------------------------------------------------------------

export function fmtDuration(ns) {
  if (ns === null || ns === undefined) return "–";
  const ms = ns / 1e6;
  if (ms < 1) return `${Math.round(ns / 1e3)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

/** Cost in USD; null means nothing was priced and is shown as "unpriced", never $0. */
export function fmtCost(cost, unpriced) {
  if (cost === null || cost === undefined) return unpriced === 0 ? "–" : "unpriced";
  const text = cost === 0 ? "$0" : cost < 0.01 ? `$${cost.toPrecision(3)}` : `$${cost.toFixed(4)}`;
  return unpriced ? `${text} + ${unpriced} unpriced` : text;
}

export function fmtInt(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US");
}

export function fmtTime(ns) {
  if (!ns) return "–";
  const d = new Date(ns / 1e6);
  const pad = (v, w = 2) => String(v).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A consistent colour per span kind (CSS custom properties, so both themes agree). */
export const KINDS = ["AGENT", "TOOL", "GUARD", "LLM", "CHAIN", "RETRIEVER", "ROUTER", "EMBEDDING", "RERANKER", "EVALUATOR", "PROMPT", "HTTP", "MESSAGING", "RPC", "DATABASE", "FRAMEWORK", "UNKNOWN"];

export function kindColor(kind) {
  const name = KINDS.includes(kind) ? kind : "UNKNOWN";
  return getComputedStyle(document.documentElement).getPropertyValue(`--kind-${name}`).trim() || "#888";
}

/** "running" for a span or trace still open, "never finished" for one whose process stopped
 *  sending heartbeats (with the time of the last one); null otherwise. */
export function liveBadge(item) {
  if (item.abandoned) {
    const last = item.last_heartbeat_ns ? ` · last heartbeat ${fmtTime(item.last_heartbeat_ns)}` : "";
    return el("span", { class: "live-badge abandoned", title: `heartbeats stopped: the process is gone${last}` }, "never finished");
  }
  return item.running ? el("span", { class: "live-badge running", title: "still running" }, "running") : null;
}

export function kindBadge(kind) {
  const name = KINDS.includes(kind) ? kind : "UNKNOWN";
  return el("span", { class: `kind kind-${name}` }, name);
}

/** Fetch JSON from the collector's API (same origin only; a signed-in browser's session cookie
 *  goes with it, the key itself is never kept by the page). */
export async function api(path, params, init = {}) {
  const url = new URL(path, window.location.origin);
  if (params) {
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
    }
  }
  const response = await fetch(url, { ...init, headers: { accept: "application/json", ...(init.headers || {}) }, credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

/** Exchange an API key for an HttpOnly session cookie; the key is dropped right after. */
export function signIn(key) {
  return api("/api/v1/session", null, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key }) });
}

/** End this browser's session. */
export function signOut() {
  return api("/api/v1/session", null, { method: "DELETE" });
}

/** Show a small tooltip with text at the pointer. */
export function tooltip(event, lines) {
  const tip = document.getElementById("tooltip");
  if (!lines) {
    tip.hidden = true;
    return;
  }
  clear(tip);
  lines.forEach((line, i) => append(tip, [i ? el("br") : null, line]));
  tip.hidden = false;
  tip.style.left = `${Math.min(event.clientX + 12, window.innerWidth - 320)}px`;
  tip.style.top = `${event.clientY + 14}px`;
}
