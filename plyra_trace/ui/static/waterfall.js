// The trace waterfall: a collapsible span tree with timing bars, virtualised (only rows in view
// exist in the DOM), so traces with tens of thousands of spans stay responsive.
import { el, fmtDuration, fmtTime, kindBadge, kindColor, liveBadge } from "./dom.js";

const ROW = 26;
const OVERSCAN = 12;

export class Waterfall {
  /** spans: depth-first order with depth (as the API returns them). */
  constructor(container, trace, { onSelect }) {
    this.spans = trace.spans;
    this.onSelect = onSelect;
    this.collapsed = new Set();
    this.selected = null;
    this.t0 = this.spans.reduce((m, s) => Math.min(m, s.start_ns), Infinity);
    // Running spans grow from what the collector measured when the trace was fetched.
    this.fetched = performance.now();
    this.running = this.spans.some((s) => s.running);
    this.measure();
    this.byId = new Map(this.spans.map((s) => [s.span_id, s]));
    this.hasChildren = this.spans.map((s, i) => i + 1 < this.spans.length && this.spans[i + 1].depth > s.depth);
    this.index = new Map(this.spans.map((s, i) => [s.span_id, i]));

    this.tickRow = this.ticks();
    const axis = el("div", { class: "wf-axis" }, el("div", { class: "wf-name" }, `${this.spans.length} spans`), this.tickRow);
    this.body = el("div", { class: "wf-body", tabindex: "0", "aria-label": "waterfall" });
    this.spacer = el("div", { class: "wf-spacer" });
    this.body.append(this.spacer);
    this.body.addEventListener("scroll", () => this.schedule());
    this.body.addEventListener("keydown", (e) => this.key(e));
    container.append(el("div", { class: "waterfall" }, axis, this.body));
    this.onResize = () => this.schedule();
    window.addEventListener("resize", this.onResize);
    this.refresh();
    if (this.running) this.timer = setInterval(() => this.grow(), 250);
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
    clearInterval(this.timer);
  }

  /** Duration of a span now: running spans have grown since the fetch. */
  duration(span) {
    return span.running ? span.duration_ns + (performance.now() - this.fetched) * 1e6 : span.duration_ns;
  }

  measure() {
    const tEnd = this.spans.reduce((m, s) => Math.max(m, s.start_ns + this.duration(s)), this.t0);
    this.total = Math.max(1, tEnd - this.t0);
  }

  /** Redraw the bars of running spans (and the time axis) as time passes. */
  grow() {
    this.measure();
    const ticks = this.ticks();
    this.tickRow.replaceWith(ticks);
    this.tickRow = ticks;
    this.draw();
  }

  ticks() {
    const wrap = el("div", { class: "wf-ticks" });
    for (let i = 0; i <= 4; i++) {
      wrap.append(el("span", { style: { left: `${i * 25}%` } }, fmtDuration((this.total * i) / 4)));
    }
    return wrap;
  }

  /** Recompute which spans are visible (not under a collapsed parent), then draw. */
  refresh() {
    const visible = [];
    let hideDeeperThan = Infinity;
    for (let i = 0; i < this.spans.length; i++) {
      const span = this.spans[i];
      if (span.depth > hideDeeperThan) continue;
      hideDeeperThan = this.collapsed.has(span.span_id) ? span.depth : Infinity;
      visible.push(i);
    }
    this.visible = visible;
    this.spacer.style.height = `${visible.length * ROW}px`;
    this.draw();
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      this.draw();
    });
  }

  draw() {
    const top = this.body.scrollTop;
    const height = this.body.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.visible.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    const rows = [];
    for (let v = first; v < last; v++) rows.push(this.row(this.visible[v], v));
    this.spacer.replaceChildren(...rows);
  }

  row(i, position) {
    const span = this.spans[i];
    const parent = span.parent_id ? this.byId.get(span.parent_id) : null;
    const caret = this.hasChildren[i]
      ? el("button", { type: "button", class: "wf-caret", "aria-label": "toggle children", on: { click: (e) => { e.stopPropagation(); this.toggle(span.span_id); } } }, this.collapsed.has(span.span_id) ? "▸" : "▾")
      : el("span", { class: "wf-caret" });
    const name = el("div", { class: "wf-name", style: { paddingLeft: `${4 + Math.min(span.depth, 40) * 14}px` } }, caret, kindBadge(span.kind), el("span", { class: "wf-label", title: span.name }, span.name));
    if (!parent || parent.service !== span.service) name.append(el("span", { class: "svc", title: "service" }, span.service));
    if (span.handoff_from || span.handoff_to) {
      name.append(el("span", { class: "handoff", title: "agent handoff" }, `⇢ ${span.handoff_from || "?"} → ${span.handoff_to || span.agent || "?"} · ${span.handoff_protocol || ""}`));
    }
    const badge = liveBadge(span);
    if (badge) name.append(badge);
    const duration = this.duration(span);
    const left = ((span.start_ns - this.t0) / this.total) * 100;
    const width = Math.max(0.15, (duration / this.total) * 100);
    const live = span.running ? " running" : span.abandoned ? " abandoned" : "";
    const bar = el("div", { class: `wf-bar${live}`, style: { left: `${left}%`, width: `${width}%`, background: kindColor(span.kind) } });
    // The duration sits after the bar, or inside it (wide bars near the end), or before it.
    let place = { left: `${left + width}%` };
    let where = "";
    if (left + width > 85) {
      where = width > 12 ? " inside" : " before";
      place = { right: `${100 - (width > 12 ? left + width : left)}%` };
    }
    let text = fmtDuration(duration);
    if (span.running) text += " …";
    if (span.abandoned) text = `✕ never finished · last heartbeat ${fmtTime(span.last_heartbeat_ns)}`;
    const label = el("span", { class: `wf-dur${where}${live}`, style: place }, text);
    const classes = ["wf-row"];
    if (live) classes.push(live.trim());
    if (span.status === 2) classes.push("error");
    if (this.selected === span.span_id) classes.push("selected");
    if (this.query && span.name.toLowerCase().includes(this.query)) classes.push("match");
    return el(
      "div",
      { class: classes.join(" "), role: "row", dataset: { spanId: span.span_id, kind: span.kind }, style: { top: `${position * ROW}px` }, on: { click: () => this.select(span.span_id) } },
      name,
      el("div", { class: "wf-track" }, bar, label),
    );
  }

  /** Highlight spans whose name contains query; returns how many match. */
  highlight(query) {
    this.query = query.trim().toLowerCase();
    this.matches = [];
    if (this.query) {
      this.spans.forEach((span, i) => {
        if (span.name.toLowerCase().includes(this.query)) this.matches.push(i);
      });
    }
    this.draw();
    return this.matches.length;
  }

  /** Select the next match after the current selection (wrapping), expanding its ancestors. */
  next() {
    if (!this.matches || !this.matches.length) return;
    const current = this.selected ? this.index.get(this.selected) : -1;
    const found = this.matches.find((i) => i > current);
    this.select(this.spans[found === undefined ? this.matches[0] : found].span_id, true);
  }

  toggle(spanId) {
    if (this.collapsed.has(spanId)) this.collapsed.delete(spanId);
    else this.collapsed.add(spanId);
    this.refresh();
  }

  select(spanId, scroll = false) {
    this.selected = spanId;
    if (scroll) {
      // Expand collapsed ancestors so the span is visible, then bring it into view.
      for (let s = this.byId.get(spanId); s && s.parent_id; s = this.byId.get(s.parent_id)) this.collapsed.delete(s.parent_id);
      this.refresh();
      const position = this.visible.indexOf(this.index.get(spanId));
      if (position >= 0) this.body.scrollTop = Math.max(0, position * ROW - this.body.clientHeight / 2);
    }
    this.draw();
    this.onSelect(this.byId.get(spanId));
  }

  key(event) {
    if (!["ArrowDown", "ArrowUp"].includes(event.key) || !this.visible.length) return;
    event.preventDefault();
    const current = this.selected ? this.visible.indexOf(this.index.get(this.selected)) : -1;
    const next = Math.max(0, Math.min(this.visible.length - 1, current + (event.key === "ArrowDown" ? 1 : -1)));
    const span = this.spans[this.visible[next]];
    const viewTop = this.body.scrollTop;
    if (next * ROW < viewTop) this.body.scrollTop = next * ROW;
    else if ((next + 1) * ROW > viewTop + this.body.clientHeight) this.body.scrollTop = (next + 1) * ROW - this.body.clientHeight;
    this.select(span.span_id);
  }
}
