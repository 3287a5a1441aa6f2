// A job's output: GET /api/jobs/{id}/logs?follow=1 (NDJSON), resumed from the last offset when the
// stream breaks (a failover); at most CHARS_MAX characters are kept on the page.
import {authHeaders} from "./api.js";

const CHARS_MAX = 1000000;
const byteLength = ev => ev.text != null ? new TextEncoder().encode(ev.text).length : atob(ev.b64).length;

function append(pre, ev) {
  const span = document.createElement("span");
  span.textContent = ev.text != null ? ev.text : atob(ev.b64);
  if (ev.stream === "stderr") span.className = "err";
  const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.appendChild(span);
  while (pre.textContent.length > CHARS_MAX && pre.firstChild) pre.removeChild(pre.firstChild);
  if (stick) pre.scrollTop = pre.scrollHeight;
}

// Follows until the job's output ends; returns a function that stops it. `say` reports the state.
export function follow(jobId, pre, say) {
  const abort = new AbortController();
  (async () => {
    let offset = 0;
    say("following");
    for (let tries = 0; tries < 600 && !abort.signal.aborted; tries++) {
      try {
        const r = await fetch("/api/jobs/" + encodeURIComponent(jobId) + "/logs?follow=1&offset=" + offset,
                              {headers: authHeaders(), signal: abort.signal, cache: "no-store"});
        if (!r.ok) {
          const d = await r.json(), err = d.error || {}, tail = (err.detail || {}).tail;
          if (r.status === 409 && err.code === "NOT_STARTED") say("waiting for it to start");
          else {
            if (tail) { append(pre, {stream: "stdout", text: tail.stdout_tail || ""}); append(pre, {stream: "stderr", text: tail.stderr_tail || ""}); }
            say((err.message || r.status) + (tail ? " (the replicated tail is shown)" : ""));
            return;
          }
        } else {
          const reader = r.body.getReader(), dec = new TextDecoder();
          let buf = "";
          for (;;) {
            const {value, done} = await reader.read();
            if (done) break;
            buf += dec.decode(value, {stream: true});
            let nl;
            while ((nl = buf.indexOf("\n")) >= 0) {
              const ev = JSON.parse(buf.slice(0, nl)); buf = buf.slice(nl + 1);
              if (ev.event === "output") { append(pre, ev); offset = ev.offset + byteLength(ev); }
              else if (ev.event === "keepalive") offset = ev.next_offset;
              else if (ev.event === "end") { say("ended" + (ev.exit_code != null ? ", exit code " + ev.exit_code : "")); return; }
              else if (ev.event === "error") say("reconnecting: " + ev.message);
            }
          }
        }
      } catch (e) { if (abort.signal.aborted) return; say("reconnecting: " + e.message); }
      await new Promise(res => setTimeout(res, 2000));
    }
  })();
  return () => abort.abort();
}
