// The jobs list: filters, sortable columns and keyset paging over GET /api/jobs (any number of jobs).
import {api} from "./api.js";
import {$, esc, status, table, timed, span, when} from "./ui.js";

const STATES = ["pending", "running", "completed", "failed", "cancelled", "expired"];
const SORTABLE = {created: "created", duration: "duration", worker: "worker", attempts: "attempts"};
const TEXT_FILTERS = ["q", "type", "queue", "label", "group"];
const PAGE = 50;
let cursors = [null];  // the cursor of each page seen so far: back is a pop, next a push
let lastKey = "";

export function params() {
  const p = new URLSearchParams(location.hash.split("?")[1] || "");
  return Object.fromEntries([...p.entries()].filter(([, v]) => v));
}

function go(p) {
  const q = new URLSearchParams(Object.entries(p).filter(([, v]) => v)).toString();
  location.hash = "#/jobs" + (q ? "?" + q : "");
}

function query(p, cursor) {
  const q = new URLSearchParams();
  for (const name of ["status", "q", "type", "queue", "group"]) if (p[name]) q.set(name, p[name]);
  for (const l of (p.label || "").split(",").map(s => s.trim()).filter(Boolean)) q.append("label", l);
  q.set("sort", p.sort || "-created");
  q.set("limit", PAGE);
  if (cursor) q.set("cursor", cursor);
  return "/api/jobs?" + q;
}

function controls(p) {
  const opt = s => "<option" + (p.status === s ? " selected" : "") + ">" + s + "</option>";
  const input = (name, ph, size) => '<input name="' + name + '" placeholder="' + ph + '" size=' + size +
    ' value="' + esc(p[name] || "") + '">';
  return '<form id=job-filters class=filters>' + input("q", "search id or key", 22) +
    '<select name=status><option value="">any state</option>' + STATES.map(opt).join("") + "</select>" +
    input("type", "type", 8) + input("queue", "queue", 8) + input("label", "label k=v,k2=v2", 14) +
    input("group", "group", 10) + '<button type=submit>filter</button> <button type=button id=job-clear>clear</button></form>';
}

function header(p, name, label) {
  const sort = p.sort || "-created";
  const active = sort.replace(/^-/, "") === name;
  const next = active && !sort.startsWith("-") ? "-" + name : (active ? name : "-" + name);
  return {html: '<th><a class=sort data-sort="' + next + '">' + esc(label) + (active ? (sort.startsWith("-") ? " ▼" : " ▲") : "") + "</a></th>"};
}

export async function render(root, {refresh = false} = {}) {
  const started = performance.now();
  const p = params();
  const key = JSON.stringify(p);
  if (key !== lastKey) { cursors = [null]; lastKey = key; }
  const page = await api(query(p, cursors[cursors.length - 1]));
  const cols = ["job", "key", "type", "status", header(p, "created", "created"), header(p, "duration", "duration"),
                header(p, "worker", "worker"), header(p, "attempts", "attempts"), "error"];
  const rows = page.jobs.map(j => ['<a class=job href="#/job/' + esc(j.job_id) + '">' + esc(j.job_id.slice(0, 12)) + "</a>",
    esc(j.key), esc(j.type), status(j.status), when(j.created_at_ms), esc(span(j.duration_ms)), esc(j.worker_id),
    esc(j.attempt), '<td class=reason>' + esc((j.error || "").slice(0, 160))]);
  const first = (cursors.length - 1) * PAGE;
  const shown = page.jobs.length ? (first + 1) + "–" + (first + page.jobs.length) : "0";
  const html = '<h2>Jobs <span class=muted id=job-count>' + shown + " of " + page.total + " matching</span></h2>" +
    (refresh ? "" : controls(p)) + '<div id=job-table>' + table(cols, rows, "no job matches") + "</div>" +
    '<div class=pager><button id=job-prev' + (cursors.length > 1 ? "" : " disabled") + '>◀ previous</button> ' +
    '<button id=job-next' + (page.cursor ? "" : " disabled") + '>next ▶</button></div>';
  if (refresh && $("#job-filters")) {
    $("#job-count").outerHTML = '<span class=muted id=job-count>' + shown + " of " + page.total + " matching</span>";
    $("#job-table").innerHTML = table(cols, rows, "no job matches");
    $(".pager").outerHTML = html.slice(html.indexOf("<div class=pager>"));
  } else {
    root.innerHTML = html;
    wireFilters(p);
  }
  $("#job-prev").onclick = () => { cursors.pop(); render(root, {refresh: true}); };
  $("#job-next").onclick = () => { cursors.push(page.cursor); render(root, {refresh: true}); };
  for (const a of root.querySelectorAll("a.sort")) a.onclick = () => go({...p, sort: a.dataset.sort});
  timed("jobs", started);
}

function wireFilters(p) {
  const form = $("#job-filters");
  form.onsubmit = e => {
    e.preventDefault();
    const next = {sort: p.sort};
    for (const name of [...TEXT_FILTERS, "status"]) next[name] = form.elements[name].value.trim();
    go(next);
  };
  form.elements.status.onchange = () => form.requestSubmit();
  $("#job-clear").onclick = () => go({});
}
