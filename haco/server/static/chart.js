// Throughput and latency over the last minutes as inline SVG, from /api/dashboard's `rates`
// (the replica's in-memory buckets, haco/server/rates.py).
import {esc} from "./ui.js";

const W = 560, H = 140, PAD = 34;

function path(points, pick, max) {
  const n = points.length;
  return points.map((p, i) => {
    const v = pick(p);
    const x = PAD + (W - PAD - 8) * i / Math.max(1, n - 1), y = H - 18 - (H - 30) * (v ?? 0) / max;
    return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
  }).join(" ");
}

function axis(max, unit) {
  return '<text class=axis x=2 y=14>' + esc(fmt(max) + " " + unit) + '</text><text class=axis x=2 y=' + (H - 18) + '>0</text>' +
    '<line class=grid x1=' + PAD + ' x2=' + W + ' y1=' + (H - 18) + ' y2=' + (H - 18) + "></line>";
}
const fmt = v => v >= 100 ? Math.round(v) : v >= 10 ? v.toFixed(0) : v.toFixed(1);

export function drawRates(rates) {
  const pts = rates.points;
  const minutes = Math.round(rates.window_s / 60);
  const tmax = Math.max(1, ...pts.map(p => Math.max(p.submitted_per_s, p.completed_per_s, p.failed_per_s)));
  const lmax = Math.max(1, ...pts.map(p => p.latency_p50_ms ?? 0));
  const last = pts[pts.length - 2] || pts[pts.length - 1];  // the newest bucket is still filling
  const legend = '<text class=axis x=' + PAD + ' y=' + (H - 3) + '>last ' + minutes + ' min, ' + rates.bucket_s + ' s buckets</text>';
  const through = '<svg class=chart id=chart-throughput width=' + W + ' height=' + H + '>' + axis(tmax, "jobs/s") +
    '<path class="line submitted" d="' + path(pts, p => p.submitted_per_s, tmax) + '"/>' +
    '<path class="line completed" d="' + path(pts, p => p.completed_per_s, tmax) + '"/>' +
    '<path class="line failed" d="' + path(pts, p => p.failed_per_s, tmax) + '"/>' + legend + "</svg>";
  const latency = '<svg class=chart id=chart-latency width=' + W + ' height=' + H + '>' + axis(lmax / 1000, "s") +
    '<path class="line latency" d="' + path(pts, p => p.latency_p50_ms, lmax) + '"/>' + legend + "</svg>";
  return '<div class=charts><div><h3>Throughput <span class=key><i class=submitted></i>submitted ' + fmt(last.submitted_per_s) +
    '/s <i class=completed></i>completed ' + fmt(last.completed_per_s) + '/s <i class=failed></i>failed ' + fmt(last.failed_per_s) +
    '/s</span></h3>' + through + '</div><div><h3>Latency <span class=key><i class=latency></i>submit to completion, median ' +
    (last.latency_p50_ms == null ? "–" : esc((last.latency_p50_ms / 1000).toFixed(2) + " s")) + "</span></h3>" + latency + "</div></div>";
}
