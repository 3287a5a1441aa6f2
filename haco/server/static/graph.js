// A job's dependencies as a small layered graph in inline SVG: dependencies on the left, the job
// in the middle, its dependents on the right; from GET /api/jobs/{id}/graph.
import {esc} from "./ui.js";

const W = 150, H = 30, GAP_X = 40, GAP_Y = 12;

export function drawGraph(g, current) {
  if (g.nodes.length === 1) return '<span class=muted>no dependencies and no dependents</span>';
  const levels = [...new Set(g.nodes.map(n => n.level))].sort((a, b) => a - b);
  const at = {};
  const rows = {};
  for (const n of g.nodes) {
    const col = levels.indexOf(n.level);
    rows[col] = (rows[col] || 0) + 1;
    at[n.job_id] = {x: col * (W + GAP_X), y: (rows[col] - 1) * (H + GAP_Y), n};
  }
  const width = levels.length * (W + GAP_X) - GAP_X, height = Math.max(...Object.values(rows)) * (H + GAP_Y) - GAP_Y;
  const edges = g.edges.filter(([a, b]) => at[a] && at[b]).map(([a, b]) => {
    const p = at[a], q = at[b], x1 = p.x + W, y1 = p.y + H / 2, x2 = q.x, y2 = q.y + H / 2, mx = (x1 + x2) / 2;
    return '<path class=edge d="M' + x1 + " " + y1 + " C" + mx + " " + y1 + " " + mx + " " + y2 + " " + x2 + " " + y2 + '" marker-end="url(#arrow)"/>';
  }).join("");
  const nodes = Object.values(at).map(({x, y, n}) => {
    const label = n.name || n.job_id.slice(0, 12);
    return '<a href="#/job/' + esc(n.job_id) + '"><g class="node s-' + esc(n.status) + (n.job_id === current ? " current" : "") +
      '" transform="translate(' + x + " " + y + ')"><rect width=' + W + " height=" + H + ' rx=5></rect>' +
      '<text x=8 y=13>' + esc(label.slice(0, 20)) + '</text><text class=sub x=8 y=25>' + esc(n.status) + "</text>" +
      "<title>" + esc(n.job_id + " (" + n.status + ")") + "</title></g></a>";
  }).join("");
  return '<svg class=graph width="' + (width + 2) + '" height="' + (height + 2) + '" viewBox="-1 -1 ' + (width + 2) + " " + (height + 2) + '">' +
    '<defs><marker id=arrow viewBox="0 0 10 10" refX=10 refY=5 markerWidth=6 markerHeight=6 orient=auto><path d="M0 0L10 5L0 10z"/></marker></defs>' +
    edges + nodes + "</svg>" + (g.truncated ? '<p class=muted>more beyond this (graph cut short)</p>' : "");
}
