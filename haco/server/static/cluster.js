// The overview: the cluster's verdict, replicas (flagged when degraded), the queue (pause/resume),
// workers with slots and resources (drain/undrain), the named queues (pause/resume each), and the
// throughput and latency chart.
import {api, may} from "./api.js";
import {drawRates} from "./chart.js";
import {$, bar, esc, status, table, timed, toast} from "./ui.js";

function replicas(d) {
  return table(["replica", "role", "term", "commit", "applied", "lag", "log", "snapshot", "digest", "version", "problems"],
    d.replicas.map(r => ({attrs: r.problems?.length || !r.reachable ? "class=flagged" : "", cells: !r.reachable
      ? [esc(r.id), "<span class=bad>unreachable</span>", "", "", "", "", "", "", "", "", '<td class=reason>' + esc(r.error || "")]
      : [esc(r.id), r.role === "leader" ? "<span class=leader>leader</span>" : esc(r.role), esc(r.term), esc(r.commit_index),
         esc(r.applied_index), esc(r.lag ?? ""), esc(r.log_entries), esc(r.snapshot_index), "<code>" + esc(String(r.digest ?? "").slice(0, 12)) + "</code>",
         esc(r.code_version) + "/" + esc(r.cluster_version), '<td class=reason>' + esc((r.problems || []).join("; "))]})), "no replicas");
}

function queue(d) {
  const q = d.queue;
  const rows = Object.entries(q.counts).map(([k, v]) => [status(k), '<a href="#/jobs?status=' + esc(k) + '">' + esc(v) + "</a>"]);
  rows.push(["ready to run", esc(q.ready)], ["paused", q.paused ? "<b class=bad>yes</b>" : "no"]);
  const admin = may("admin") ? "" : " disabled title='needs an admin token'";
  return table(["state", "jobs"], rows) + (q.paused ? '<button id=queue-resume' + admin + ">resume the queue</button>"
                                                   : '<button id=queue-pause class=danger' + admin + ">pause the queue</button>");
}

// Named queues; "(other)" sums the implicit names past the replica's bound: figures only.
function namedQueues(d) {
  const admin = may("admin") ? "" : " disabled title='needs an admin token'";
  const row = q => {
    const other = q.name === "(other)";
    const jobs = st => other ? esc(q.counts[st] ?? 0)
      : '<a href="#/jobs?queue=' + encodeURIComponent(q.name) + "&status=" + st + '">' + esc(q.counts[st] ?? 0) + "</a>";
    const verb = q.paused ? "resume" : "pause";
    const settings = other ? ["", "", "", ""] : [q.paused ? "<b class=bad>yes</b>" : "no", esc(q.max_running || "none"), esc(q.weight), esc(q.priority)];
    return {attrs: 'data-queue="' + esc(q.name) + '"' + (q.paused ? " class=flagged" : ""), cells: [
      esc(q.name) + (q.explicit || other ? "" : " <span class=muted title='no record: the implicit settings'>implicit</span>"),
      ...settings, jobs("pending"), esc(q.ready), q.max_running ? bar(q.counts.running ?? 0, q.max_running) : jobs("running"),
      jobs("completed"), jobs("failed"),
      other || !d.actions?.queue_pause ? "" : '<button class="queue-toggle' + (q.paused ? "" : " danger") + '" data-queue="' + esc(q.name) +
        '" data-verb=' + verb + admin + ">" + verb + "</button>"]};
  };
  const rows = (d.queues || []).map(row);
  if (d.queues_other) rows.push(row(d.queues_other));
  return table(["queue", "paused", "max running", "weight", "priority", "pending", "ready", "running", "completed", "failed", ""],
    rows, "no queues");
}

function resources(w) {
  const parts = [w.cpus ? w.cpus + " CPUs" : "", w.memory_gb ? w.memory_gb + " GB" : "", w.hardware.length ? w.hardware.join(",") : "",
                 w.cuda_compute ? "CUDA " + w.cuda_compute : ""].filter(Boolean);
  const l = w.load || {};
  const load = [l.cpu_percent != null ? "cpu " + Math.round(l.cpu_percent) + "%" : "", l.memory_percent != null ? "mem " + Math.round(l.memory_percent) + "%" : "",
                l.load_1m != null ? "load " + l.load_1m : ""].filter(Boolean);
  return esc(parts.join(", ")) + (load.length ? ' <span class=muted>(' + esc(load.join(", ")) + ")</span>" : "");
}

function workers(d) {
  const admin = may("admin") ? "" : " disabled title='needs an admin token'";
  return table(["worker", "status", "connected", "slots in use", "resources (load)", "tags", ""], d.workers.map(w =>
    ({attrs: 'data-worker="' + esc(w.worker_id) + '"', cells: [esc(w.worker_id), status(w.status),
      w.connected ? "yes" : w.connected === false ? "<span class=muted>no</span>" : "?", bar(w.running.length, w.capacity),
      resources(w), esc(w.tags.join(",")),
      w.status === "active" ? '<button class="drain danger" data-worker="' + esc(w.worker_id) + '"' + admin + ">drain</button>"
        : w.status === "draining" && d.actions?.undrain ? '<button class=undrain data-worker="' + esc(w.worker_id) + '"' + admin + ">undrain</button>" : ""]})),
    "no workers registered");
}

export async function render(root, {refresh = false} = {}) {
  const started = performance.now();
  const d = await api("/api/dashboard");
  const h = d.health || {status: "unknown", summary: ""};
  root.innerHTML = '<p class="verdict ' + esc(h.status) + '" id=verdict>' + esc(h.summary) + "</p>" +
    "<h2>Replicas <span class=muted>as " + esc(d.replica) + " sees them</span></h2>" + replicas(d) +
    '<div class=grid><div><h2>Queue</h2>' + queue(d) + "</div><div><h2>Workers <span class=muted>" +
    esc(d.workers_from ? "(connections and load as " + d.workers_from + " sees them)" : "") + "</span></h2>" + workers(d) + "</div></div>" +
    "<h2>Named queues</h2><div id=queues>" + namedQueues(d) + "</div>" +
    (d.rates ? drawRates(d.rates) : "");
  const post = async (path, what) => {
    try { await api(path, {method: "POST"}); toast(what); } catch (e) { toast(what + " refused: " + e.message, true); }
    render(root, {refresh: true});
  };
  if ($("#queue-pause")) $("#queue-pause").onclick = () => post("/api/queue/pause", "queue paused");
  if ($("#queue-resume")) $("#queue-resume").onclick = () => post("/api/queue/resume", "queue resumed");
  for (const b of root.querySelectorAll("button.queue-toggle"))
    b.onclick = () => post("/api/queues/" + encodeURIComponent(b.dataset.queue) + "/" + b.dataset.verb, "queue " + b.dataset.queue + " " + b.dataset.verb + "d");
  for (const b of root.querySelectorAll("button.drain, button.undrain")) {
    const verb = b.classList.contains("drain") ? "drain" : "undrain";
    b.onclick = () => post("/api/workers/" + encodeURIComponent(b.dataset.worker) + "/" + verb, "worker " + b.dataset.worker + " " + verb + "ed");
  }
  if (!refresh) timed("overview", started);
  return d;
}
