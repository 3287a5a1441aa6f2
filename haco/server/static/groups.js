// Groups (workflow batches and schedule runs) and schedules, with retry and pause/resume.
import {api, may} from "./api.js";
import {$, esc, status, table, timed, toast, when} from "./ui.js";

export async function render(root) {
  const started = performance.now();
  const [{groups}, {schedules}] = await Promise.all([api("/api/groups?limit=50"), api("/api/schedules")]);
  const submit = may("submit") ? "" : " disabled title='needs a submitter or admin token'";
  const g = table(["group", "state", "jobs", "counts", "created", "schedule", ""], groups.map(x => [
    '<a href="#/jobs?group=' + esc(x.group_id) + '">' + esc(x.group_id) + "</a>", status(x.state), esc(x.total),
    esc(Object.entries(x.counts).filter(([, v]) => v).map(([k, v]) => k + " " + v).join(", ")), when(x.created_at_ms),
    esc(x.schedule_id || ""), x.failed.length ? '<button class=group-retry data-group="' + esc(x.group_id) + '"' + submit + ">retry failed</button>" : ""]),
    "no groups");
  const s = table(["schedule", "when", "jobs", "paused", "fired", "skipped", "last run", "next due", ""], schedules.map(x => [
    esc(x.schedule_id), esc(x.cron ? x.cron + (x.tz ? " " + x.tz : "") : "every " + x.every_s + " s"), esc(x.jobs.join(", ")),
    x.paused ? "<b class=bad>yes</b>" : "no", esc(x.fired), esc(x.skipped),
    x.last_group ? '<a href="#/jobs?group=' + esc(x.last_group) + '">' + when(x.last_slot_ms) + "</a>" : "",
    when(x.next_due_ms[0]), '<button class=sched-toggle data-id="' + esc(x.schedule_id) + '" data-verb="' + (x.paused ? "resume" : "pause") + '"' + submit + ">" +
      (x.paused ? "resume" : "pause") + "</button>"]), "no schedules");
  root.innerHTML = "<h2>Groups <span class=muted>newest first</span></h2>" + g + "<h2>Schedules</h2>" + s;
  const post = async (path, what) => {
    try { await api(path, {method: "POST"}); toast(what); } catch (e) { toast(what + " refused: " + e.message, true); }
    render(root);
  };
  for (const b of root.querySelectorAll(".group-retry"))
    b.onclick = () => post("/api/groups/" + encodeURIComponent(b.dataset.group) + "/retry", "group " + b.dataset.group + " retried");
  for (const b of root.querySelectorAll(".sched-toggle"))
    b.onclick = () => post("/api/schedules/" + encodeURIComponent(b.dataset.id) + "/" + b.dataset.verb, "schedule " + b.dataset.id + " " + b.dataset.verb + "d");
  timed("groups", started);
}
