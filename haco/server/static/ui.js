// Small DOM and formatting helpers shared by the views. No framework: strings are escaped here.
export const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
export const $ = sel => document.querySelector(sel);

// A table from column headers and rows of HTML cells (already escaped by the caller).
export function table(cols, rows, empty = "nothing here") {
  const head = "<tr>" + cols.map(c => typeof c === "string" ? "<th>" + esc(c) + "</th>" : c.html).join("") + "</tr>";
  const body = rows.length ? rows.map(r => "<tr" + (r.attrs ? " " + r.attrs : "") + ">" +
      (r.cells || r).map(v => String(v).startsWith("<td") ? v : "<td>" + v + "</td>").join("") + "</tr>").join("")
    : '<tr><td class=muted colspan=' + cols.length + ">" + esc(empty) + "</td></tr>";
  return "<table>" + head + body + "</table>";
}

export function ago(ms) {
  if (ms == null) return "";
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 0) return "in " + span(-s * 1000);
  return span(s * 1000) + " ago";
}

export function span(ms) {
  if (ms == null) return "";
  if (ms < 1000) return ms + " ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}

export const when = ms => ms == null ? "" : '<span title="' + esc(new Date(ms).toISOString()) + '">' + esc(ago(ms)) + "</span>";
export const status = s => '<span class="st s-' + esc(s) + '">' + esc(s) + "</span>";

export function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

export function bar(used, total) {
  const pct = total > 0 ? Math.min(100, Math.round(100 * used / total)) : 0;
  return '<span class=bar><i style="width:' + pct + '%"></i></span>' + esc(used) + "/" + esc(total);
}

// What a pending job waits for, from GET /api/jobs/{id}'s pending_reason, in words.
export function reason(r) {
  if (!r) return "";
  const parts = [];
  for (const [k, v] of Object.entries(r)) {
    if (k === "paused") parts.push("the queue is paused");
    else if (k === "waiting_on") parts.push("waiting on " + v.length + " dependenc" + (v.length === 1 ? "y" : "ies"));
    else if (k === "not_before_ms") parts.push("starts " + ago(v));
    else if (k === "backoff_until_ms") parts.push("backing off until " + new Date(v).toLocaleTimeString());
    else if (k === "queued") parts.push(v);
    else if (k === "no_worker_fits" || k === "unfit_workers")
      parts.push((k === "no_worker_fits" ? "no worker fits: " : "unfit: ") +
        Object.entries(v).map(([w, why]) => w + " (" + why.join(", ") + ")").join("; "));
    else parts.push(k + ": " + (typeof v === "object" ? JSON.stringify(v) : v));
  }
  return esc(parts.join("; "));
}

let toastTimer = null;
export function toast(text, bad = false) {
  const el = $("#toast");
  el.textContent = text; el.className = bad ? "bad show" : "show";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = ""; }, 5000);
}

// Time a view's render: logged to the console and kept in window.hacoRenders (the browser test reads it).
export function timed(view, started) {
  const ms = Math.round(performance.now() - started);
  (window.hacoRenders = window.hacoRenders || []).push({view, ms});
  console.info("render " + view + " " + ms + " ms");
  document.body.dataset.rendered = view;
}
