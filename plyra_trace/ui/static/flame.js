// A flamegraph drawn on <canvas>: click a frame to zoom into it, search highlights frames.
import { el, tooltip } from "./dom.js";

const ROW = 18;

function hue(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h;
}

/** A flamegraph of a server-built tree ({name, value, self, count, children}). */
export class Flamegraph {
  constructor(container, { format }) {
    this.format = format;
    this.root = null;
    this.focus = null;
    this.query = "";
    this.frames = [];
    this.search = el("input", { type: "search", placeholder: "search frames", class: "flame-search", "aria-label": "search frames" });
    this.search.addEventListener("input", () => {
      this.query = this.search.value.trim().toLowerCase();
      this.draw();
    });
    this.reset = el("button", { type: "button", on: { click: () => this.zoom(this.root) } }, "reset zoom");
    this.info = el("span", { class: "muted flame-info" });
    this.canvas = el("canvas", { class: "flame-canvas", role: "img", "aria-label": "flamegraph" });
    this.canvas.addEventListener("click", (e) => {
      const frame = this.hit(e);
      if (frame) this.zoom(frame.node);
    });
    this.canvas.addEventListener("mousemove", (e) => {
      const frame = this.hit(e);
      if (!frame) return tooltip(e, null);
      const n = frame.node;
      const pct = this.root.value ? ((100 * n.value) / this.root.value).toFixed(1) : "0";
      tooltip(e, [n.name, `${this.format(n.value)} (${pct}%) · self ${this.format(n.self)}`, `${n.count} span(s)`]);
    });
    this.canvas.addEventListener("mouseleave", (e) => tooltip(e, null));
    container.append(el("div", { class: "flame-tools" }, this.search, this.reset, this.info), this.canvas);
    this.onResize = () => this.draw();
    window.addEventListener("resize", this.onResize);
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
  }

  setData(root) {
    const link = (node, parent) => {
      node.parent = parent;
      for (const child of node.children) link(child, node);
    };
    link(root, null);
    this.root = root;
    this.focus = root;
    this.draw();
  }

  zoom(node) {
    this.focus = node;
    this.draw();
  }

  hit(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    return this.frames.find((f) => x >= f.x && x < f.x + f.w && y >= f.y && y < f.y + ROW);
  }

  draw() {
    if (!this.root) return;
    const width = Math.max(200, this.canvas.parentElement ? this.canvas.parentElement.clientWidth : 800);
    const ancestors = [];
    for (let n = this.focus; n; n = n.parent) ancestors.unshift(n);
    const frames = [];
    ancestors.forEach((node, depth) => frames.push({ node, x: 0, w: width, y: depth * ROW, ancestor: node !== this.focus }));
    const base = ancestors.length - 1;
    const total = this.focus.value || 1;
    const stack = [[this.focus, 0, width, base]];
    let matches = 0;
    while (stack.length) {
      const [node, x, w, depth] = stack.pop();
      let cx = x;
      for (const child of node.children) {
        const cw = (child.value / total) * width;
        if (cw >= 0.5) {
          frames.push({ node: child, x: cx, w: cw, y: (depth + 1) * ROW, ancestor: false });
          stack.push([child, cx, cw, depth + 1]);
        }
        cx += cw;
      }
    }
    const depthMax = frames.reduce((m, f) => Math.max(m, f.y), 0) / ROW + 1;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.floor(width * dpr);
    this.canvas.height = Math.floor(depthMax * ROW * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${depthMax * ROW}px`;
    const ctx = this.canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    const dark = document.documentElement.dataset.theme === "dark";
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (const f of frames) {
      const match = this.query && f.node.name.toLowerCase().includes(this.query);
      if (match) matches++;
      const h = hue(f.node.name);
      let fill = `hsl(${10 + (h % 40)}, ${60 + (h % 25)}%, ${dark ? 42 : 62}%)`;
      if (f.ancestor) fill = dark ? "#3a3f4b" : "#d8dbe2";
      if (this.query) fill = match ? "#d63cf5" : dark ? "#2c3038" : "#e6e8ee";
      ctx.fillStyle = fill;
      ctx.fillRect(f.x, f.y, Math.max(0.5, f.w - 1), ROW - 1);
      if (f.w > 30) {
        ctx.fillStyle = dark && !match ? "#f2f2f2" : "#111";
        ctx.save();
        ctx.beginPath();
        ctx.rect(f.x, f.y, f.w - 2, ROW);
        ctx.clip();
        ctx.fillText(f.node.name, f.x + 4, f.y + ROW / 2);
        ctx.restore();
      }
    }
    this.frames = frames;
    this.canvas.dataset.frames = String(frames.length);
    this.info.textContent = `${this.focus.name}: ${this.format(this.focus.value)}` + (this.query ? ` · ${matches} match(es)` : "");
  }
}
