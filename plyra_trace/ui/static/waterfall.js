// The trace waterfall: a collapsible span tree with timing bars, virtualised (only rows in view
// exist in the DOM), so traces with tens of thousands of spans stay responsive.
import { el, fmtDuration, kindBadge, kindColor } from "./dom.js";

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
    const tEnd = this.spans.reduce((m, s) => Math.max(m, s.end_ns), this.t0);
    this.total = Math.max(1, tEnd - this.t0);
    this.byId = new Map(this.spans.map((s) => [s.span_id, s]));
    this.hasChildren = this.spans.map((s, i) => i + 1 < this.spans.length && this.spans[i + 1].depth > s.depth);
    this.index = new Map(this.spans.map((s, i) => [s.span_id, i]));

    const axis = el("div", { class: "wf-axis" }, el("div", { class: "wf-name" }, `${this.spans.length} spans`), this.ticks());
    this.body = el("div", { class: "wf-body", tabindex: "0", "aria-label": "waterfall" });
    this.spacer = el("div", { class: "wf-spacer" });
    this.body.append(this.spacer);
    this.body.addEventListener("scroll", () => this.schedule());
    this.body.addEventListener("keydown", (e) => this.key(e));
    container.append(el("div", { class: "waterfall" }, axis, this.body));
    this.onResize = () => this.schedule();
    window.addEventListener("resize", this.onResize);
    this.refresh();
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
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
    const left = ((span.start_ns - this.t0) / this.total) * 100;
    const width = Math.max(0.15, (span.duration_ns / this.total) * 100);
    const bar = el("div", { class: "wf-bar", style: { left: `${left}%`, width: `${width}%`, background: kindColor(span.kind) } });
    // The duration sits after the bar, or inside it (wide bars near the end), or before it.
    let place = { left: `${left + width}%` };
    let where = "";
    if (left + width > 85) {
      where = width > 12 ? " inside" : " before";
      place = { right: `${100 - (width > 12 ? left + width : left)}%` };
    }
    const label = el("span", { class: `wf-dur${where}`, style: place }, fmtDuration(span.duration_ns));
    const classes = ["wf-row"];
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
