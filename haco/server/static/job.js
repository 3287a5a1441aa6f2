// One job: its state and why it waits, cancel/retry, the spec, attempts with errors and resource
// figures, its dependencies as a graph (graph.js) and its live output (log.js).
import {api, may} from "./api.js";
import {drawGraph} from "./graph.js";
import {follow} from "./log.js";
import {$, bytes, esc, reason, span, status, table, timed, toast, when} from "./ui.js";

const RETRYABLE = ["failed", "cancelled", "expired"];
let following = null;  // {jobId, stop}

export function leave() { if (following) { following.stop(); following = null; } }

function stat(k, v) {
  if (v == null) return "";
  if (/bytes$/.test(k)) return esc(k.replace(/_bytes$/, "")) + " " + esc(bytes(v));
  if (/_s$/.test(k) && typeof v === "number") return esc(k.replace(/_s$/, "")) + " " + esc(v.toFixed(2)) + " s";
  return esc(k) + " " + esc(typeof v === "object" ? JSON.stringify(v) : v);
}

function attempts(job) {
  const rows = job.attempts.map(a => [esc(a.attempt), esc(a.worker_id), when(a.assigned_at_ms), when(a.started_at_ms),
    esc(a.ended_at_ms && a.started_at_ms ? span(a.ended_at_ms - a.started_at_ms) : ""), esc(a.outcome || "running"),
    '<td class=reason>' + esc(a.error || ""), '<td class=stats>' + Object.entries(a.stats || {}).map(([k, v]) => stat(k, v)).join("<br>")]);
  return table(["#", "worker", "assigned", "started", "ran", "outcome", "error", "resources"], rows, "not assigned yet");
}

function spec(job) {
  const req = job.requirements || {};
  const needs = [job.required_tags.length ? "tags " + job.required_tags.join(",") : "",
    req.hardware?.length ? "hardware " + req.hardware.join(",") : "", req.min_memory_gb ? req.min_memory_gb + " GB memory" : "",
    req.min_cuda_compute ? "CUDA " + req.min_cuda_compute : "", req.cpus ? req.cpus + " CPUs" : ""].filter(Boolean).join(", ");
  const rows = [["type", esc(job.type)], ["key", esc(job.key)], ["priority", esc(job.priority)],
    ["labels", esc(Object.entries(job.labels).map(([k, v]) => k + "=" + v).join(", "))], ["needs", esc(needs || "nothing special")],
    ["timeout", esc(job.timeout_s + " s")], ["retries", esc(job.failures + " failed of " + job.max_retries + " allowed, backoff " + job.backoff_s + " s")],
    ["deadline", when(job.deadline_ms)], ["group", job.group_id ? '<a href="#/jobs?group=' + esc(job.group_id) + '">' + esc(job.group_id) + "</a>" : ""],
    ["schedule", esc(job.schedule_id || "")], ["payload", "<pre class=payload>" + esc(JSON.stringify(job.payload, null, 2)) + "</pre>"]];
  if (job.result != null) rows.push(["result", "<pre class=payload>" + esc(JSON.stringify(job.result, null, 2)) + "</pre>"]);
  return "<table class=kv>" + rows.map(([k, v]) => "<tr><th>" + k + "</th><td>" + v + "</td></tr>").join("") + "</table>";
}

export async function render(root, jobId, {refresh = false} = {}) {
  const started = performance.now();
  const [{job}, graph] = await Promise.all([api("/api/jobs/" + encodeURIComponent(jobId)),
                                            api("/api/jobs/" + encodeURIComponent(jobId) + "/graph").catch(() => null)]);
  const cancellable = !["completed", "failed", "cancelled", "expired"].includes(job.status);
  const buttons = (cancellable ? '<button id=job-cancel class=danger' + (may("submit") ? "" : " disabled title='needs a submitter or admin token'") + ">cancel</button>" : "") +
    (RETRYABLE.includes(job.status) ? '<button id=job-retry' + (may("submit") ? "" : " disabled") + ">retry</button>" : "");
  const why = job.status === "pending" ? '<p class=why id=pending-reason><b>Why it waits:</b> ' + reason(job.pending_reason) + "</p>" : "";
  const err = job.error ? '<p class=bad id=job-error>' + esc(job.error) + "</p>" : "";
  const html = '<h2>Job <code>' + esc(job.job_id) + "</code> " + status(job.status) + " " + buttons + "</h2>" +
    '<p class=muted>created ' + when(job.created_at_ms) + (job.finished_at_ms ? ", ended " + when(job.finished_at_ms) : "") +
    ", attempt " + esc(job.attempt) + (job.worker_id ? " on " + esc(job.worker_id) : "") + "</p>" + why + err +
    '<div class=grid><div><h3>Spec</h3>' + spec(job) + '</div><div><h3>Dependencies</h3><div id=graph></div></div></div>' +
    "<h3>Attempts</h3>" + attempts(job) +
    '<h3>Output <span class=muted id=log-state></span></h3><pre id=log></pre>';
  if (refresh) {
    const keep = $("#log");
    root.innerHTML = html;
    if (keep) $("#log").replaceWith(keep);
  } else root.innerHTML = html;
  $("#graph").innerHTML = graph ? drawGraph(graph, job.job_id) : '<span class=muted>unavailable</span>';
  if ($("#job-cancel")) $("#job-cancel").onclick = () => act(root, jobId, "/api/jobs/" + encodeURIComponent(jobId) + "/cancel",
                                                              {reason: "cancelled from the dashboard"}, "cancelled");
  if ($("#job-retry")) $("#job-retry").onclick = () => act(root, jobId, "/api/jobs/retry", {job_ids: [jobId]}, "retried");
  if (!following || following.jobId !== jobId) {
    leave();
    following = {jobId, stop: follow(jobId, $("#log"), text => { const s = $("#log-state"); if (s) s.textContent = text; })};
  }
  timed("job", started);
}

async function act(root, jobId, path, body, done) {
  try {
    await api(path, {method: "POST", body});
    toast("job " + jobId.slice(0, 12) + " " + done);
  } catch (e) { toast(done.replace(/d$/, "") + " refused: " + e.message, true); }
  await render(root, jobId, {refresh: true});
}
