// The dashboard's router and shell: views by address (#/, #/jobs?..., #/job/ID, #/groups), the
// token form, and each view's refresh. Plain ES modules, no build step.
import {claims, setToken, token, whenUnauthorized} from "./api.js";
import * as cluster from "./cluster.js";
import * as groups from "./groups.js";
import * as job from "./job.js";
import * as jobs from "./jobs.js";
import {$, esc} from "./ui.js";

const REFRESH_MS = {overview: 2000, jobs: 5000, job: 3000, groups: 5000};
let generation = 0;

function route() {
  const h = location.hash.replace(/^#/, "");
  const old = h.match(/^log=([^&]+)/);  // the previous page's #log=JOB
  if (old) { location.replace("#/job/" + old[1]); return null; }
  const m = h.match(/^\/job\/([^?/]+)/);
  if (m) return {view: "job", id: decodeURIComponent(m[1])};
  if (h.startsWith("/jobs")) return {view: "jobs"};
  if (h.startsWith("/groups")) return {view: "groups"};
  return {view: "overview"};
}

function showToken() {
  const c = claims();
  const el = $("#token-state");
  if (!token()) { el.textContent = "no token"; el.className = "pill"; return; }
  const left = c && c.exp ? Math.round((c.exp * 1000 - Date.now()) / 60000) : null;
  el.textContent = "token: " + (c?.role || "?") + (left != null ? (left > 0 ? ", " + left + " min left" : ", expired") : "");
  el.className = "pill " + (left != null && left <= 0 ? "bad" : "ok");
}

function askToken(message) {
  $("#token-why").textContent = message || "";
  $("#token-form").hidden = false;
  $("#token-input").value = "";
  $("#token-input").focus();
}

async function show() {
  const gen = ++generation;
  const r = route();
  if (!r) return;
  const root = $("#view");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.view === (r.view === "job" ? "jobs" : r.view));
  if (r.view !== "job") job.leave();
  const draw = async refresh => {
    if (r.view === "overview") {
      const d = await cluster.render(root, {refresh});
      $("#leader").textContent = d.leader ?? "none"; $("#leader").className = d.leader ? "leader" : "bad";
      $("#term").textContent = d.term;
    } else if (r.view === "jobs") await jobs.render(root, {refresh});
    else if (r.view === "job") await job.render(root, r.id, {refresh});
    else await groups.render(root);
  };
  const tick = async refresh => {
    if (gen !== generation) return;
    if (refresh && document.hidden) { setTimeout(() => tick(true), REFRESH_MS[r.view]); return; }  // a background tab asks nothing
    try { await draw(refresh); $("#err").textContent = ""; $("#refreshed").textContent = new Date().toLocaleTimeString(); }
    catch (e) { if (gen === generation) $("#err").textContent = (refresh ? "refresh failed: " : "") + e.message; }
    if (gen === generation) setTimeout(() => tick(true), REFRESH_MS[r.view]);
  };
  if (r.view !== "job" || !root.querySelector("#log")) root.innerHTML = '<p class=muted>loading…</p>';
  await tick(false);
}

$("#token-state").onclick = () => askToken("");
$("#token-form").onsubmit = e => {
  e.preventDefault();
  setToken($("#token-input").value);
  $("#token-form").hidden = true;
  showToken(); show();
};
$("#token-forget").onclick = () => { setToken(null); $("#token-form").hidden = true; showToken(); show(); };
$("#token-cancel").onclick = () => { $("#token-form").hidden = true; };
whenUnauthorized(e => askToken(token() ? "The token was refused: " + e.message : "This cluster needs a token (haco token create)."));
window.addEventListener("hashchange", show);
showToken();
show();
export {esc};
