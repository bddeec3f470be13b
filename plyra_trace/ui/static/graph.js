// The agents graph: agents as nodes, handoffs as labelled edges, in a simple layered SVG layout.
import { clear, fmtCost, fmtDuration, fmtInt, svg } from "./dom.js";

const COL = 400;
const ROWGAP = 130;
const NODE_W = 170;
const NODE_H = 56;

/** Layer of each agent: longest path from a source, bounded so cycles terminate. */
function layers(nodes, edges) {
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const e of edges) {
      if (e.from === e.to) continue;
      const want = layer.get(e.from) + 1;
      if (want > layer.get(e.to) && want < nodes.length) {
        layer.set(e.to, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return layer;
}

/** Draw the graph into svgRoot; onNode(id) and onEdge(edge) are called on click. */
export function drawGraph(svgRoot, graph, { onNode, onEdge, selected }) {
  clear(svgRoot);
  const { nodes, edges } = graph;
  const layer = layers(nodes, edges);
  const columns = new Map();
  for (const node of nodes) {
    const l = layer.get(node.id);
    if (!columns.has(l)) columns.set(l, []);
    columns.get(l).push(node);
  }
  const pos = new Map();
  let maxRows = 1;
  for (const [l, column] of columns) {
    maxRows = Math.max(maxRows, column.length);
    column.forEach((node, i) => pos.set(node.id, { x: 30 + l * COL, y: 40 + i * ROWGAP }));
  }
  const width = 60 + Math.max(1, columns.size) * COL;
  const height = 80 + maxRows * ROWGAP;
  svgRoot.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svgRoot.setAttribute("width", String(width));
  svgRoot.setAttribute("height", String(height));

  const defs = svg("defs", null, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" })));
  svgRoot.append(defs);

  const pairCount = new Map();
  for (const edge of edges) {
    const key = `${edge.from}\u0000${edge.to}`;
    const n = pairCount.get(key) || 0;
    pairCount.set(key, n + 1);
    const a = pos.get(edge.from);
    const b = pos.get(edge.to);
    if (!a || !b) continue;
    const offset = n * 46;
    let d;
    let lx;
    let ly;
    if (edge.from === edge.to) {
      const x = a.x + NODE_W / 2;
      const y = a.y + NODE_H;
      d = `M${x - 20},${y} C${x - 60},${y + 70 + offset} ${x + 60},${y + 70 + offset} ${x + 20},${y}`;
      lx = x;
      ly = y + 60 + offset;
    } else {
      const x1 = a.x + NODE_W;
      const y1 = a.y + NODE_H / 2;
      const x2 = b.x;
      const y2 = b.y + NODE_H / 2;
      const back = x2 <= x1;
      const bend = back ? 90 + offset : 0;
      d = back
        ? `M${a.x + NODE_W / 2},${a.y + NODE_H} C${a.x + NODE_W / 2},${a.y + NODE_H + bend} ${b.x + NODE_W / 2},${b.y + NODE_H + bend} ${b.x + NODE_W / 2},${b.y + NODE_H}`
        : `M${x1},${y1} C${x1 + 80},${y1 + offset} ${x2 - 80},${y2 + offset} ${x2},${y2}`;
      lx = back ? (a.x + b.x) / 2 + NODE_W / 2 : (x1 + x2) / 2;
      ly = back ? Math.max(a.y, b.y) + NODE_H + bend * 0.75 : (y1 + y2) / 2 + offset - 40;
    }
    const errorRate = edge.count ? edge.errors / edge.count : 0;
    const isSelected = selected && selected.type === "edge" && selected.from === edge.from && selected.to === edge.to && selected.protocol === edge.protocol;
    const group = svg(
      "g",
      { class: `edge${errorRate > 0 ? " has-errors" : ""}${isSelected ? " selected" : ""}`, role: "button", tabindex: "0", dataset: { from: edge.from, to: edge.to, protocol: edge.protocol }, on: { click: () => onEdge(edge) } },
      svg("path", { d, class: "edge-line", "marker-end": "url(#arrow)" }),
      svg("path", { d, class: "edge-hit" }),
      svg(
        "text",
        { x: lx, y: ly, class: "edge-label", "text-anchor": "middle" },
        svg("tspan", { x: lx, dy: "0" }, `${edge.protocol} · ${fmtInt(edge.count)} call${edge.count === 1 ? "" : "s"}`),
        svg("tspan", { x: lx, dy: "14" }, `err ${(errorRate * 100).toFixed(errorRate && errorRate < 0.1 ? 1 : 0)}% · p95 ${fmtDuration(edge.p95_ns)}`),
        svg("tspan", { x: lx, dy: "14" }, `cost ${fmtCost(edge.cost, 0)}`),
      ),
    );
    svgRoot.append(group);
  }

  for (const node of nodes) {
    const p = pos.get(node.id);
    const isSelected = selected && selected.type === "node" && selected.id === node.id;
    svgRoot.append(
      svg(
        "g",
        { class: `node${node.errors ? " has-errors" : ""}${isSelected ? " selected" : ""}`, role: "button", tabindex: "0", dataset: { agent: node.id }, transform: `translate(${p.x},${p.y})`, on: { click: () => onNode(node.id) } },
        svg("rect", { width: NODE_W, height: NODE_H, rx: "8" }),
        svg("text", { x: NODE_W / 2, y: 22, "text-anchor": "middle", class: "node-name" }, node.id.length > 22 ? `${node.id.slice(0, 21)}…` : node.id),
        svg("text", { x: NODE_W / 2, y: 42, "text-anchor": "middle", class: "node-stats" }, `${fmtInt(node.traces)} traces · ${fmtInt(node.errors)} err · ${fmtCost(node.cost, 0)}`),
      ),
    );
  }
}
