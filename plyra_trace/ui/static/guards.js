// Guards page: policy decisions by policy and action over time, the most blocked agents, and a
// way from each row to the traces it happened in. Values come from /api/v1/guards; all text.
import { api, el, fmtDuration, fmtInt, fmtTime, svg, tooltip } from "./dom.js";

export const ACTIONS = ["block", "modify", "redact", "flag", "allow"];

/** A decision's action as a coloured badge (unknown actions keep their own name, grey). */
export function actionBadge(action) {
  const known = ACTIONS.includes(action) ? action : "other";
  return el("span", { class: `action action-${known}`, title: `guard action: ${action}` }, action);
}

/**
 * Render the Guards page into `view`.
 * helpers: { href, link, table, windowSelect, onLive } from the app (routing and shared widgets).
 */
export async function guardsPage(view, params, helpers) {
  const { href, link, table, windowSelect, onLive } = helpers;
  const state = {
    last: params.has("last") ? params.get("last") : "24h",
    project: params.get("project") || "",
    agent: params.get("agent") || "",
    provider: params.get("provider") || "",
    policy: params.get("policy") || "",
  };
  const go = (changes) => (window.location.hash = href("/guards", { ...state, ...changes, last: (changes.last ?? state.last) || "all" }));
  const inputs = {};
  const form = el("form", { class: "filters guard-filters", on: { submit: (e) => { e.preventDefault(); go(Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value]))); } } });
  for (const [name, placeholder] of [["project", "project"], ["agent", "agent"], ["provider", "provider"]]) {
    inputs[name] = el("input", { name, placeholder, "aria-label": placeholder, value: state[name], size: 12 });
    form.append(inputs[name]);
  }
  inputs.last = windowSelect(state.last === "all" ? "" : state.last, (v) => go({ last: v }));
  form.append(inputs.last, el("button", { type: "submit" }, "Filter"));
  const count = el("span", { class: "muted" });
  const chartHolder = el("div", { class: "chart-wrap guard-chart" });
  const policyPick = el("select", { "aria-label": "policy shown in the chart", class: "policy-pick" });
  const tableHolder = el("div", { class: "guard-table" });
  const blockedHolder = el("div", { class: "blocked-agents" });
  view.append(
    el("h1", null, "Guards ", count),
    form,
    el("div", { class: "guard-head" }, el("h2", null, "Decisions over time"), policyPick),
    chartHolder,
    el("div", { class: "guard-columns" }, el("section", null, el("h2", null, "By policy and action"), tableHolder), el("section", null, el("h2", null, "Most blocked agents"), blockedHolder)),
  );
  policyPick.addEventListener("change", () => go({ policy: policyPick.value }));

  async function load() {
    const last = state.last === "all" ? "" : state.last;
    const data = await api("/api/v1/guards", { last, project: state.project, agent: state.agent, provider: state.provider });
    const total = data.items.reduce((s, r) => s + r.count, 0);
    count.textContent = `${fmtInt(total)} decisions`;
    const policies = [...new Set(data.items.map((r) => r.policy))].sort();
    policyPick.replaceChildren(el("option", { value: "" }, "all policies"), ...policies.map((p) => el("option", { value: p, selected: p === state.policy }, p)));
    drawSeries(chartHolder, data, state.policy);
    const traceLink = (row) => ({ guard_policy: row.policy, guard_action: row.action, last, project: state.project, agent: state.agent });
    const rows = data.items.map((r) =>
      el(
        "tr",
        { class: "clickable", dataset: { policy: r.policy, action: r.action }, on: { click: (e) => { if (e.target.tagName !== "A") window.location.hash = href("/traces", traceLink(r)); } } },
        el("td", null, link("/traces", traceLink(r), r.policy)),
        el("td", null, actionBadge(r.action)),
        el("td", { class: "num" }, fmtInt(r.count)),
        el("td", null, r.agents.map((a) => link("/traces", { agent: a, guard_policy: r.policy, guard_action: r.action, last }, el("span", { class: "agent-tag" }, a)))),
        el("td", null, r.providers.join(", ")),
        el("td", { class: "num" }, fmtDuration(r.p95_ns)),
        el("td", { class: "nowrap" }, fmtTime(r.last_ns)),
        el("td", { class: "mono" }, r.trace_ids.map((id) => link(`/trace/${id}`, null, id.slice(0, 8), " "))),
      ),
    );
    tableHolder.replaceChildren(
      rows.length
        ? table(["Policy", "Action", "Decisions", "Agents", "Providers", "p95", "Last", "Recent traces"], rows, "guards")
        : el("p", { class: "muted" }, "No guard decisions in this window. A GUARD span with guard.action (from @guard, plyra-guard, guardrails-ai or NeMo Guardrails) is one."),
    );
    const max = Math.max(1, ...data.blocked_agents.map((b) => b.count));
    blockedHolder.replaceChildren(
      data.blocked_agents.length
        ? el(
            "ol",
            { class: "blocked-list" },
            data.blocked_agents.map((b) =>
              el(
                "li",
                { dataset: { agent: b.agent } },
                link("/traces", { agent: b.agent, guard_action: "block", last }, b.agent),
                el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: { width: `${(100 * b.count) / max}%` } })),
                el("span", { class: "num" }, fmtInt(b.count)),
              ),
            ),
          )
        : el("p", { class: "muted" }, "No blocks in this window."),
    );
  }
  await load();
  onLive(load, ["trace", "poll"], 1500);
}

/** Stacked bars per time bucket, one colour per action (for one policy or all). */
function drawSeries(holder, data, policy) {
  const points = data.series.filter((p) => !policy || p.policy === policy);
  holder.replaceChildren();
  if (!points.length || !data.bucket_ns) {
    holder.append(el("p", { class: "muted" }, "Nothing to chart yet."));
    return;
  }
  const buckets = new Map();
  for (const p of points) {
    const bucket = buckets.get(p.t_ns) || {};
    bucket[p.action] = (bucket[p.action] || 0) + p.count;
    buckets.set(p.t_ns, bucket);
  }
  const times = [...buckets.keys()].sort((a, b) => a - b);
  const width_ns = data.bucket_ns;
  const first = Math.floor((data.since_ns ?? times[0]) / width_ns) * width_ns;
  const end = Math.max(data.until_ns ?? 0, times[times.length - 1] + width_ns);
  const slots = Math.max(1, Math.min(120, Math.ceil((end - first) / width_ns)));
  const totals = times.map((t) => Object.values(buckets.get(t)).reduce((s, n) => s + n, 0));
  const max = Math.max(1, ...totals);
  const width = Math.max(320, holder.clientWidth - 16);
  const height = 180;
  const plot = { left: 36, right: 8, top: 8, bottom: 22 };
  const slot = (width - plot.left - plot.right) / slots;
  const barWidth = Math.max(2, Math.min(48, slot - 2));
  const root = svg("svg", { class: "series", width, height, role: "img", "aria-label": `guard decisions per ${fmtDuration(data.bucket_ns)}` });
  root.append(svg("text", { x: 4, y: plot.top + 10, class: "axis" }, fmtInt(max)), svg("text", { x: 4, y: height - plot.bottom, class: "axis" }, "0"));
  for (const t of times) {
    const bucket = buckets.get(t);
    const index = Math.max(0, Math.min(slots - 1, Math.round((t - first) / width_ns)));
    let y = height - plot.bottom;
    const actions = Object.keys(bucket).sort((a, b) => order(a) - order(b));
    for (const action of actions) {
      const h = ((height - plot.top - plot.bottom) * bucket[action]) / max;
      y -= h;
      const rect = svg("rect", { x: plot.left + index * slot + 1, y, width: barWidth, height: Math.max(1, h), class: `bar action-${ACTIONS.includes(action) ? action : "other"}`, dataset: { t: String(t), action, count: String(bucket[action]) } });
      rect.addEventListener("mousemove", (e) => tooltip(e, [fmtTime(t), `${action}: ${fmtInt(bucket[action])}`]));
      rect.addEventListener("mouseleave", () => tooltip(null));
      root.append(rect);
    }
  }
  root.append(svg("text", { x: plot.left, y: height - 6, class: "axis" }, fmtTime(first)), svg("text", { x: width - plot.right, y: height - 6, class: "axis end" }, fmtTime(end)));
  const legend = el("div", { class: "legend" }, [...new Set(points.map((p) => p.action))].sort((a, b) => order(a) - order(b)).map(actionBadge));
  holder.append(root, legend);
}

function order(action) {
  const i = ACTIONS.indexOf(action);
  return i < 0 ? ACTIONS.length : i;
}

/** A session's guard decisions, in time order, for the session page. */
export async function sessionGuards(sessionId, { link }) {
  const data = await api(`/api/v1/sessions/${encodeURIComponent(sessionId)}/guards`, { limit: 500 });
  if (!data.items.length) return null;
  const rows = data.items.map((g) =>
    el(
      "tr",
      { dataset: { guardTrace: g.trace_id, action: g.action } },
      el("td", { class: "nowrap" }, fmtTime(g.start_ns)),
      el("td", null, g.service),
      el("td", null, g.agent ? el("span", { class: "agent-tag" }, g.agent) : ""),
      el("td", null, g.policy),
      el("td", null, actionBadge(g.action)),
      el("td", null, g.provider || ""),
      el("td", { class: "num" }, fmtDuration(g.duration_ns)),
      el("td", { class: "mono" }, link(`/trace/${g.trace_id}`, { span: g.span_id }, g.trace_id.slice(0, 8))),
    ),
  );
  return el(
    "section",
    { class: "session-guards" },
    el("h2", null, `Guard decisions (${fmtInt(data.items.length)})`),
    el("p", { class: "muted" }, "Every policy decision across this session's traces and services, in the order they were taken."),
    el("table", { class: "grid guard-decisions" }, el("thead", null, el("tr", null, ["Time", "Service", "Agent", "Policy", "Action", "Provider", "Took", "Trace"].map((h) => el("th", null, h)))), el("tbody", null, rows)),
  );
}
